// The GPU hierarchical allreduce (GpuCommunicator, algorithm hierarchical): the CPU algorithm's
// steps (collectives/allreduce_hierarchical.cc) on device buffers, per chunk of the tensor:
//   1. reduce-scatter inside the host: this rank receives the sum of its slice over the host's
//      ranks (NCCL: ncclReduceScatter, or one ncclReduce per rank where slices differ by one);
//   2. with error feedback the slice's residual is added; the slice sum is QSGD-encoded and its
//      code all-gathered among the ranks that hold the same slice on every host; decode-and-mean,
//      times H/P (the mean over hosts of host sums, rescaled to the mean over all P ranks);
//   3. all-gather of the slices inside the host, straight into the caller's buffer.
// Sums, codes and the decode run on the caller's stream, the transfers on the communicator's;
// events order them. Chunks are issued start(0), start(1), finish(0), start(2), finish(1), ...,
// the same sequence on every rank, so the collectives of the two sub-communicators that share one
// stream cannot wait on each other in a cycle.
#include <algorithm>
#include <vector>

#include "codec/cuda/cuda_status.h"
#include "collectives/gpu/gpu_kernels.h"
#include "collectives/gpu/gpu_slot.h"
#include "qcomm/cuda_codec.h"
#include "qcomm/topology.h"

namespace qcomm {

Status GpuCommunicator::hierarchical(float* data, int64_t n, uint32_t tensorId, uint64_t step,
                                     float* residual, cudaStream_t stream) {
  transport::DeviceTransport& intra = *intra_;
  transport::DeviceTransport* cross = cross_.get();  // null: one host, nothing is compressed
  const int l = intra.size(), me = intra.rank(), hosts = layout_.hosts;
  const float scale = static_cast<float>(hosts) / static_cast<float>(layout_.worldSize);
  // Chunks as the CPU path cuts them (kHierarchicalChunkNumel), so both give the same words.
  const int64_t chunk = std::min(hierarchicalChunkNumel(options_.chunkNumel, hosts), n);
  QCOMM_RETURN_IF_ERROR(ensureSlots(std::max<int64_t>(1, (chunk + l - 1) / l), hosts, true));
  const RandomKey key{options_.seed, static_cast<uint32_t>(cross != nullptr ? cross->rank() : 0),
                      sliceStream(tensorId, me), step};
  const auto phase = [&](double* total, cudaStream_t s, auto&& run) {
    return runPhase(timePhases_, transport_, total, s, run);
  };

  // Chunk c: its values [begin, begin + m), this rank's slice [begin + offset, + count), every
  // local rank's slice length (floats and bytes) and the layout of a code of this slice.
  struct Piece {
    int64_t begin, m, offset, count;
    std::vector<size_t> counts, bytes;
    size_t scales = 0, codeBytes = 0;
  };
  const auto pieceOf = [&](int64_t c) -> Result<Piece> {
    Piece p;
    p.begin = c * chunk;
    p.m = std::min(chunk, n - p.begin);
    p.offset = sliceStart(p.m, me, l);
    p.count = sliceStart(p.m, me + 1, l) - p.offset;
    for (int j = 0; j < l; ++j) {
      p.counts.push_back(static_cast<size_t>(sliceStart(p.m, j + 1, l) - sliceStart(p.m, j, l)));
      p.bytes.push_back(p.counts.back() * sizeof(float));
    }
    if (p.count > 0) {
      QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(p.count, codec_));
      p.scales = gpuCodeScaleBytes(g);
      p.codeBytes = gpuCodeBytes(g);
    }
    return p;
  };
  // The caller's data is ready when the work it queued on `stream` so far is done.
  QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(ready_, stream));
  QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(commStream_, ready_, 0));

  // Steps 1 and 2a: reduce-scatter inside the host; encode; start the transfer across hosts.
  const auto start = [&](int64_t c) -> Status {
    Slot& s = slots_[c % 2];
    QCOMM_ASSIGN_OR_RETURN(const Piece piece, pieceOf(c));
    // s.sum's last reader was chunk c-2's decode.
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(commStream_, s.decoded, 0));
    QCOMM_RETURN_IF_ERROR(phase(&times_.exchangeMs, commStream_, [&] {
      return intra.reduceScatterSum(data + piece.begin, s.sum.data(), piece.counts, commStream_);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.reduced, commStream_));
    bytesSent_ += static_cast<uint64_t>(piece.m - piece.count) * sizeof(float);
    if (cross == nullptr || piece.count == 0) return Status::ok();
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, s.reduced, 0));
    float* res = residual != nullptr ? residual + piece.begin + piece.offset : nullptr;
    QCOMM_RETURN_IF_ERROR(phase(&times_.encodeMs, stream, [&]() -> Status {
      if (res != nullptr) {  // error feedback on what this rank compresses: its host sum
        QCOMM_CUDA_RETURN_IF_ERROR(
            collectives::gpu::add(s.sum.data(), s.sum.data(), res, piece.count, stream));
      }
      return cuda::qsgdEncode(s.sum.data(), piece.count, codec_, key,
                              reinterpret_cast<float*>(s.send.data()),
                              reinterpret_cast<uint64_t*>(s.send.data() + piece.scales),
                              workspace_.data(), workspace_.size(), stream);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.encoded, stream));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(commStream_, s.encoded, 0));
    QCOMM_RETURN_IF_ERROR(phase(&times_.exchangeMs, commStream_, [&] {
      return cross->allGather(s.send.data(), s.recv.data(), piece.codeBytes, commStream_);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.exchanged, commStream_));
    const uint64_t across = static_cast<uint64_t>(piece.codeBytes) * (hosts - 1);
    bytesSent_ += across;
    bytesSentAcrossHosts_ += across;
    return Status::ok();
  };

  // Steps 2b and 3: decode and average across hosts, rescale, all-gather inside the host.
  const auto finish = [&](int64_t c) -> Status {
    Slot& s = slots_[c % 2];
    QCOMM_ASSIGN_OR_RETURN(const Piece piece, pieceOf(c));
    if (piece.count > 0) {
      float* res = residual != nullptr ? residual + piece.begin + piece.offset : nullptr;
      // s.result's last reader was chunk c-2's all-gather.
      QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, s.gathered, 0));
      QCOMM_RETURN_IF_ERROR(phase(&times_.decodeMs, stream, [&]() -> Status {
        if (cross == nullptr) {  // one host: the host sum is the result; nothing was lost
          QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, s.reduced, 0));
          QCOMM_CUDA_RETURN_IF_ERROR(collectives::gpu::multiply(s.result.data(), s.sum.data(),
                                                                piece.count, scale, stream));
          if (res != nullptr) {
            QCOMM_CUDA_RETURN_IF_ERROR(
                cudaMemsetAsync(res, 0, piece.count * sizeof(float), stream));
          }
          return Status::ok();
        }
        std::vector<cuda::DeviceCode> codes(hosts);
        for (int h = 0; h < hosts; ++h) {
          const uint8_t* base = s.recv.data() + h * piece.codeBytes;
          codes[h] = {reinterpret_cast<const float*>(base),
                      reinterpret_cast<const uint64_t*>(base + piece.scales)};
        }
        QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, s.exchanged, 0));
        QCOMM_RETURN_IF_ERROR(cuda::qsgdDecodeMean(codes, piece.count, codec_, s.result.data(),
                                                   stream, res != nullptr ? cross->rank() : -1,
                                                   s.sum.data(), res));
        QCOMM_CUDA_RETURN_IF_ERROR(collectives::gpu::multiply(s.result.data(), s.result.data(),
                                                              piece.count, scale, stream));
        return Status::ok();
      }));
    }
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.decoded, stream));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(commStream_, s.decoded, 0));
    QCOMM_RETURN_IF_ERROR(phase(&times_.exchangeMs, commStream_, [&] {
      return intra.allGatherV(s.result.data(), data + piece.begin, piece.bytes, commStream_);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.gathered, commStream_));
    bytesSent_ += static_cast<uint64_t>(piece.count) * sizeof(float) * (l - 1);
    return Status::ok();
  };

  const int64_t chunks = (n + chunk - 1) / chunk;
  for (int64_t c = 0; c < chunks; ++c) {
    QCOMM_RETURN_IF_ERROR(start(c));
    if (c > 0) QCOMM_RETURN_IF_ERROR(finish(c - 1));
  }
  QCOMM_RETURN_IF_ERROR(finish(chunks - 1));
  // The caller's stream continues once the last slices have landed in `data`.
  QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(done_, commStream_));
  QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, done_, 0));
  return Status::ok();
}

}  // namespace qcomm
