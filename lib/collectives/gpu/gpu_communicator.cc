// The GPU allreduce: QSGD allgather on device buffers, pipelined over two CUDA streams.
#include "qcomm/gpu_communicator.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "codec/cuda/cuda_status.h"
#include "codec/wire_bytes.h"
#include "collectives/gpu/gpu_kernels.h"
#include "qcomm/communicator.h"
#include "qcomm/cuda_codec.h"

namespace qcomm {
namespace {

// The same hash the CPU Communicator takes of a key, so both derive the same tensor id.
uint64_t fnv1a(std::string_view text) {
  return wire::fnv1a(wire::kFnvOffset, text.data(), text.size());
}

size_t scaleArea(int64_t buckets) { return (4 * static_cast<size_t>(buckets) + 7) / 8 * 8; }

}  // namespace

// One pipeline slot: this rank's code, every rank's codes, and the events that order them.
struct GpuCommunicator::Slot {
  cuda::DeviceBuffer<uint8_t> send, recv;
  cudaEvent_t encoded = nullptr, exchanged = nullptr, decoded = nullptr;
  ~Slot() {
    for (cudaEvent_t e : {encoded, exchanged, decoded}) {
      if (e != nullptr) cudaEventDestroy(e);
    }
  }
};

std::string GpuCommunicatorOptions::describe() const {
  return strCat(codec, " error_feedback=", errorFeedback ? 1 : 0, " seed=", seed,
                " min_compress=", minCompressNumel, " chunk=", chunkNumel);
}

GpuCommunicator::GpuCommunicator(transport::DeviceTransport& transport,
                                 GpuCommunicatorOptions options, QsgdOptions codec)
    : transport_(transport), options_(std::move(options)), codec_(codec) {}

GpuCommunicator::~GpuCommunicator() {
  if (commStream_ != nullptr) cudaStreamDestroy(commStream_);
}

Result<std::unique_ptr<GpuCommunicator>> GpuCommunicator::create(
    transport::DeviceTransport& transport, const GpuCommunicatorOptions& options) {
  const int me = transport.rank();
  QCOMM_ASSIGN_OR_RETURN(const CodecConfig codec, parseAnyCodecSpec(options.codec));
  if (!codec.isQsgd) {
    return invalidArgument("rank ", me, ": the GPU path runs QSGD codes; '", options.codec,
                           "' is a block quantizer (its kernels exist, qcomm::cuda::quantize, but "
                           "are not wired into the GPU allreduce)");
  }
  if (options.chunkNumel < 1 || options.minCompressNumel < 0) {
    return invalidArgument("rank ", me, ": chunkNumel must be >= 1 and minCompressNumel >= 0");
  }
  auto comm = std::unique_ptr<GpuCommunicator>(new GpuCommunicator(transport, options, codec.qsgd));
  QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&comm->commStream_, cudaStreamNonBlocking));
  // Every rank must have the same options: compare hashes of their descriptions.
  const int p = transport.size();
  QCOMM_ASSIGN_OR_RETURN(cuda::DeviceBuffer<uint64_t> hashes,
                         cuda::DeviceBuffer<uint64_t>::allocate(p + 1));
  const uint64_t mine = fnv1a(options.describe());
  QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(hashes.data() + p, &mine, 8, cudaMemcpyHostToDevice,
                                             comm->commStream_));
  QCOMM_RETURN_IF_ERROR(transport.allGather(hashes.data() + p, hashes.data(), 8, comm->commStream_));
  std::vector<uint64_t> all(p);
  QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(all.data(), hashes.data(), 8 * p,
                                             cudaMemcpyDeviceToHost, comm->commStream_));
  QCOMM_RETURN_IF_ERROR(transport.synchronize(comm->commStream_));
  for (int r = 0; r < p; ++r) {
    if (all[r] != all[0]) {
      return failedPrecondition("GPU communicator options differ between ranks: rank ", r,
                                " has other options than rank 0 (rank ", me, " has '",
                                options.describe(), "')");
    }
  }
  return comm;
}

Status GpuCommunicator::ensureSlots(int64_t chunk) {
  if (slots_ != nullptr && chunk <= slotChunk_) return Status::ok();
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(chunk, codec_));
  const size_t bytes = scaleArea(g.numBuckets) + 8 * static_cast<size_t>(g.wordCount);
  auto slots = std::make_unique<Slot[]>(2);
  for (int s = 0; s < 2; ++s) {
    QCOMM_ASSIGN_OR_RETURN(slots[s].send, cuda::DeviceBuffer<uint8_t>::allocate(bytes));
    QCOMM_ASSIGN_OR_RETURN(slots[s].recv,
                           cuda::DeviceBuffer<uint8_t>::allocate(bytes * transport_.size()));
    for (cudaEvent_t* e : {&slots[s].encoded, &slots[s].exchanged, &slots[s].decoded}) {
      QCOMM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    }
  }
  QCOMM_ASSIGN_OR_RETURN(const size_t wsBytes, cuda::qsgdEncodeWorkspaceBytes(chunk, codec_));
  QCOMM_ASSIGN_OR_RETURN(workspace_, cuda::DeviceBuffer<uint8_t>::allocate(wsBytes));
  slots_ = std::move(slots);
  slotChunk_ = chunk;
  return Status::ok();
}

Status GpuCommunicator::compressed(float* data, int64_t n, uint32_t tensorId, uint64_t step,
                                   float* residual, cudaStream_t stream) {
  const int p = transport_.size();
  const int me = transport_.rank();
  const int64_t chunk = std::min(options_.chunkNumel, n);
  QCOMM_RETURN_IF_ERROR(ensureSlots(chunk));
  const float* input = data;
  if (residual != nullptr) {
    if (static_cast<int64_t>(work_.size()) < n) {
      QCOMM_ASSIGN_OR_RETURN(work_, cuda::DeviceBuffer<float>::allocate(n));
    }
    QCOMM_CUDA_RETURN_IF_ERROR(collectives::gpu::add(work_.data(), data, residual, n, stream));
    input = work_.data();
  }
  using Clock = std::chrono::steady_clock;
  const auto phase = [&](double* total, cudaStream_t s, auto&& run) -> Status {
    const Clock::time_point t0 = Clock::now();
    QCOMM_RETURN_IF_ERROR(run());
    if (timePhases_) {
      QCOMM_RETURN_IF_ERROR(transport_.synchronize(s));
      *total += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    }
    return Status::ok();
  };
  const int64_t chunks = (n + chunk - 1) / chunk;
  // start(c): encode chunk c and start its all-gather; finish(c): decode and average it. Run as
  // start(0), start(1), finish(0), start(2), finish(1), ... so encoding overlaps the exchange.
  // Where chunk c lies: its values, and its code's layout in a slot (scales, then words).
  struct Piece {
    int64_t begin, m;
    size_t scales, bytes;
  };
  const auto pieceOf = [&](int64_t c) -> Result<Piece> {
    const int64_t begin = c * chunk, m = std::min(chunk, n - begin);
    QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(m, codec_));
    const size_t scales = scaleArea(g.numBuckets);
    return Piece{begin, m, scales, scales + 8 * static_cast<size_t>(g.wordCount)};
  };
  const auto start = [&](int64_t c) -> Status {
    Slot& s = slots_[c % 2];
    QCOMM_ASSIGN_OR_RETURN(const Piece piece, pieceOf(c));
    const auto [begin, m, scales, bytes] = piece;
    QCOMM_RETURN_IF_ERROR(phase(&times_.encodeMs, stream, [&] {
      return cuda::qsgdEncode(input + begin, m, codec_, {options_.seed, static_cast<uint32_t>(me),
                                                         tensorId, step},
                              reinterpret_cast<float*>(s.send.data()),
                              reinterpret_cast<uint64_t*>(s.send.data() + scales),
                              workspace_.data(), workspace_.size(), stream);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.encoded, stream));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(commStream_, s.encoded, 0));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(commStream_, s.decoded, 0));  // recv is free
    QCOMM_RETURN_IF_ERROR(phase(&times_.exchangeMs, commStream_, [&] {
      return transport_.allGather(s.send.data(), s.recv.data(), bytes, commStream_);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.exchanged, commStream_));
    bytesSent_ += bytes * static_cast<size_t>(p - 1);
    return Status::ok();
  };
  const auto finish = [&](int64_t c) -> Status {
    Slot& s = slots_[c % 2];
    QCOMM_ASSIGN_OR_RETURN(const Piece piece, pieceOf(c));
    const auto [begin, m, scales, bytes] = piece;
    std::vector<cuda::DeviceCode> codes(p);
    for (int r = 0; r < p; ++r) {
      const uint8_t* base = s.recv.data() + r * bytes;
      codes[r] = {reinterpret_cast<const float*>(base),
                  reinterpret_cast<const uint64_t*>(base + scales)};
    }
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, s.exchanged, 0));
    QCOMM_RETURN_IF_ERROR(phase(&times_.decodeMs, stream, [&] {
      return cuda::qsgdDecodeMean(codes, m, codec_, data + begin, stream,
                                  residual != nullptr ? me : -1, input + begin,
                                  residual != nullptr ? residual + begin : nullptr);
    }));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventRecord(s.decoded, stream));
    return Status::ok();
  };
  for (int64_t c = 0; c < chunks; ++c) {
    QCOMM_RETURN_IF_ERROR(start(c));
    if (c > 0) QCOMM_RETURN_IF_ERROR(finish(c - 1));
  }
  return finish(chunks - 1);
}

Status GpuCommunicator::allreduceMean(float* data, int64_t n, const std::string& key,
                                      cudaStream_t stream) {
  const uint64_t step = step_++;
  times_ = {};
  if (n < 0) return invalidArgument("rank ", transport_.rank(), ": negative size ", n);
  if (n == 0) return Status::ok();
  if (data == nullptr) return invalidArgument("rank ", transport_.rank(), ": data is null");
  const int p = transport_.size();
  if ((p == 1 && !options_.compressSingleRank) || n < options_.minCompressNumel) {
    // The CPU path's uncompressed schedule: a float sum, then a division by P.
    QCOMM_RETURN_IF_ERROR(transport_.allReduceSum(data, static_cast<size_t>(n), stream));
    QCOMM_CUDA_RETURN_IF_ERROR(collectives::gpu::divide(data, n, static_cast<float>(p), stream));
    bytesSent_ += static_cast<uint64_t>(n) * 4;
    return Status::ok();
  }
  float* residual = nullptr;
  if (options_.errorFeedback) {
    cuda::DeviceBuffer<float>& r = residuals_[key];
    if (static_cast<int64_t>(r.size()) != n) {  // new or resized: start from zero
      QCOMM_ASSIGN_OR_RETURN(r, cuda::DeviceBuffer<float>::allocate(n));
      QCOMM_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(r.data(), 0, r.bytes(), stream));
    }
    residual = r.data();
  }
  return compressed(data, n, static_cast<uint32_t>(fnv1a(key)), step, residual, stream);
}

Status GpuCommunicator::synchronize(cudaStream_t stream) { return transport_.synchronize(stream); }

}  // namespace qcomm
