// The GPU allreduce: creation (options agreed, the hierarchy split off) and the flat QSGD
// allgather on device buffers, pipelined over two CUDA streams (hierarchical: gpu_hierarchical.cc).
#include "qcomm/gpu_communicator.h"

#include <algorithm>
#include <map>
#include <vector>

#include "codec/cuda/cuda_status.h"
#include "codec/wire_bytes.h"
#include "collectives/gpu/gpu_kernels.h"
#include "collectives/gpu/gpu_slot.h"
#include "qcomm/communicator.h"
#include "qcomm/cuda_codec.h"
#include "qcomm/transport.h"

namespace qcomm {
namespace {

// The same hash the CPU Communicator takes of a key, so both derive the same tensor id.
uint64_t fnv1a(std::string_view text) {
  return wire::fnv1a(wire::kFnvOffset, text.data(), text.size());
}

// Every rank's `value`, in rank order, through device memory on `stream`.
Result<std::vector<uint64_t>> gatherU64(transport::DeviceTransport& transport, uint64_t value,
                                        cudaStream_t stream) {
  const int p = transport.size();
  QCOMM_ASSIGN_OR_RETURN(cuda::DeviceBuffer<uint64_t> buffer,
                         cuda::DeviceBuffer<uint64_t>::allocate(p + 1));
  QCOMM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(buffer.data() + p, &value, 8, cudaMemcpyHostToDevice, stream));
  QCOMM_RETURN_IF_ERROR(transport.allGather(buffer.data() + p, buffer.data(), 8, stream));
  std::vector<uint64_t> all(p);
  QCOMM_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(all.data(), buffer.data(), 8 * p, cudaMemcpyDeviceToHost, stream));
  QCOMM_RETURN_IF_ERROR(transport.synchronize(stream));
  return all;
}

}  // namespace

GpuCommunicator::Slot::~Slot() {
  for (cudaEvent_t e : {encoded, exchanged, decoded, reduced, gathered}) {
    if (e != nullptr) cudaEventDestroy(e);
  }
}

std::string GpuCommunicatorOptions::describe() const {
  return strCat(codec, " error_feedback=", errorFeedback ? 1 : 0, " seed=", seed,
                " min_compress=", minCompressNumel, " chunk=", chunkNumel,
                " algorithm=", algorithmName(algorithm));
}

GpuCommunicator::GpuCommunicator(transport::DeviceTransport& transport,
                                 GpuCommunicatorOptions options, QsgdOptions codec)
    : transport_(transport), options_(std::move(options)), codec_(codec) {}

GpuCommunicator::~GpuCommunicator() {
  for (cudaEvent_t e : {ready_, done_}) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  if (commStream_ != nullptr) cudaStreamDestroy(commStream_);
}

Status GpuCommunicatorOptions::validate() const {
  QCOMM_ASSIGN_OR_RETURN(const CodecConfig parsed, parseAnyCodecSpec(codec));
  if (!parsed.isQsgd) {
    return invalidArgument("the GPU path runs QSGD codes; '", codec,
                           "' is a block quantizer (its kernels exist, qcomm::cuda::quantize, but "
                           "are not wired into the GPU allreduce)");
  }
  if (chunkNumel < 1 || minCompressNumel < 0) {
    return invalidArgument("chunkNumel must be >= 1 and minCompressNumel >= 0");
  }
  if (algorithm != Algorithm::kAllgather && algorithm != Algorithm::kHierarchical) {
    return invalidArgument("the GPU path runs algorithm allgather or hierarchical, not ",
                           algorithmName(algorithm));
  }
  return Status::ok();
}

Result<std::unique_ptr<GpuCommunicator>> GpuCommunicator::create(
    transport::DeviceTransport& transport, const GpuCommunicatorOptions& options) {
  const int me = transport.rank();
  QCOMM_RETURN_IF_ERROR(options.validate().withContext(strCat("rank ", me, ": ")));
  const CodecConfig codec = *parseAnyCodecSpec(options.codec);
  const int p = transport.size();
  if (options.ranksPerHost < 0 || (options.ranksPerHost > 0 && p % options.ranksPerHost != 0)) {
    return invalidArgument("rank ", me, ": ranksPerHost ", options.ranksPerHost,
                           " does not divide ", p, " ranks into equal hosts");
  }
  auto comm = std::unique_ptr<GpuCommunicator>(new GpuCommunicator(transport, options, codec.qsgd));
  QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&comm->commStream_, cudaStreamNonBlocking));
  for (cudaEvent_t* e : {&comm->ready_, &comm->done_}) {
    QCOMM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
  }
  // Every rank must have the same options: compare hashes of their descriptions.
  QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> all,
                         gatherU64(transport, fnv1a(options.describe()), comm->commStream_));
  for (int r = 0; r < p; ++r) {
    if (all[r] != all[0]) {
      return failedPrecondition("GPU communicator options differ between ranks: rank ", r,
                                " has other options than rank 0 (rank ", me, " has '",
                                options.describe(), "')");
    }
  }
  QCOMM_RETURN_IF_ERROR(comm->setUpHierarchy());
  return comm;
}

Status GpuCommunicator::setUpHierarchy() {
  const int p = transport_.size(), me = transport_.rank();
  // Where ranks run: their host names (and network namespaces), all-gathered on the device.
  const auto whereRanksRun = [&]() -> Result<std::vector<int>> {
    QCOMM_ASSIGN_OR_RETURN(const std::vector<uint64_t> keys,
                           gatherU64(transport_, fnv1a(transport::thisHostKey()), commStream_));
    std::map<uint64_t, int> number;
    std::vector<int> hosts;
    for (uint64_t k : keys) {
      hosts.push_back(number.emplace(k, static_cast<int>(number.size())).first->second);
    }
    return hosts;
  };
  QCOMM_ASSIGN_OR_RETURN(layout_, groupRanksByHost(options_.ranksPerHost, p, me, whereRanksRun,
                                                   [&](uint64_t mine) {
                                                     return gatherU64(transport_, mine,
                                                                      commStream_);
                                                   }));
  if (options_.algorithm != Algorithm::kHierarchical || p == 1 ||
      (layout_.hosts > 1 && !layout_.multiLevel())) {
    return Status::ok();  // flat
  }
  QCOMM_RETURN_IF_ERROR(checkUniformHosts(layout_, "the GPU hierarchical allreduce"));
  // Collective on every rank, in the same order as the CPU Communicator's split.
  QCOMM_ASSIGN_OR_RETURN(intra_, transport_.split(layout_.host, me));
  if (layout_.hosts > 1) {
    QCOMM_ASSIGN_OR_RETURN(cross_, transport_.split(layout_.localRank, layout_.host));
  }
  if (intra_ == nullptr || (layout_.hosts > 1 && cross_ == nullptr)) {
    return internalError("rank ", me, ": splitting the ", transport_.name(),
                         " transport by host gave no group");
  }
  return Status::ok();
}

Status GpuCommunicator::ensureSlots(int64_t values, int peers, bool slices) {
  if (slots_ != nullptr && values <= slotValues_ && peers == slotPeers_ &&
      (slotSlices_ || !slices)) {
    return Status::ok();
  }
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry g, qsgdGeometry(values, codec_));
  const size_t bytes = gpuCodeBytes(g);
  auto fresh = std::make_unique<Slot[]>(2);
  for (int s = 0; s < 2; ++s) {
    Slot& slot = fresh[s];
    QCOMM_ASSIGN_OR_RETURN(slot.send, cuda::DeviceBuffer<uint8_t>::allocate(bytes));
    QCOMM_ASSIGN_OR_RETURN(slot.recv, cuda::DeviceBuffer<uint8_t>::allocate(bytes * peers));
    if (slices) {
      QCOMM_ASSIGN_OR_RETURN(slot.sum, cuda::DeviceBuffer<float>::allocate(values));
      QCOMM_ASSIGN_OR_RETURN(slot.result, cuda::DeviceBuffer<float>::allocate(values));
    }
    for (cudaEvent_t* e : {&slot.encoded, &slot.exchanged, &slot.decoded, &slot.reduced,
                           &slot.gathered}) {
      QCOMM_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    }
  }
  QCOMM_ASSIGN_OR_RETURN(const size_t wsBytes, cuda::qsgdEncodeWorkspaceBytes(values, codec_));
  QCOMM_ASSIGN_OR_RETURN(workspace_, cuda::DeviceBuffer<uint8_t>::allocate(wsBytes));
  // (Queued work may still use the old slots: cudaFree waits for the device first.)
  slots_ = std::move(fresh);
  slotValues_ = values;
  slotPeers_ = peers;
  slotSlices_ = slices;
  return Status::ok();
}

Status GpuCommunicator::compressed(float* data, int64_t n, uint32_t tensorId, uint64_t step,
                                   float* residual, cudaStream_t stream) {
  const int p = transport_.size();
  const int me = transport_.rank();
  const int64_t chunk = std::min(options_.chunkNumel, n);
  QCOMM_RETURN_IF_ERROR(ensureSlots(chunk, p, false));
  const float* input = data;
  if (residual != nullptr) {
    if (static_cast<int64_t>(work_.size()) < n) {
      QCOMM_ASSIGN_OR_RETURN(work_, cuda::DeviceBuffer<float>::allocate(n));
    }
    QCOMM_CUDA_RETURN_IF_ERROR(collectives::gpu::add(work_.data(), data, residual, n, stream));
    input = work_.data();
  }
  const auto phase = [&](double* total, cudaStream_t s, auto&& run) {
    return runPhase(timePhases_, transport_, total, s, run);
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
    return Piece{begin, m, gpuCodeScaleBytes(g), gpuCodeBytes(g)};
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
    bytesSentAcrossHosts_ += bytes * static_cast<size_t>(p - layout_.localSize());
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
    if (layout_.hosts > 1) bytesSentAcrossHosts_ += static_cast<uint64_t>(n) * 4;
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
  const uint32_t tensorId = static_cast<uint32_t>(fnv1a(key));
  if (intra_ != nullptr) return hierarchical(data, n, tensorId, step, residual, stream);
  return compressed(data, n, tensorId, step, residual, stream);
}

Status GpuCommunicator::synchronize(cudaStream_t stream) { return transport_.synchronize(stream); }

}  // namespace qcomm
