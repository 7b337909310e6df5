// The GPU path of the compressed allreduce (target qcomm::gpu): device buffers in, device buffers
// out. Each chunk is QSGD-encoded on the device, its code all-gathered over a DeviceTransport (NCCL,
// or MPI with device buffers), and decoded-and-averaged on the device; chunks are pipelined on two
// CUDA streams with events, so chunk c+1 is encoded while chunk c travels. Workspaces are allocated
// once and reused; error-feedback residuals stay on the device. No host synchronization inside the
// pipeline, except what the staged MPI transport does per chunk.
//
// For the same seed, key, chunking and call count, the result equals the CPU Communicator's with
// algorithm=allgather, bit for bit: same codes, same rank-order fp32 mean.
//
// algorithm=hierarchical (hosts with several GPUs): per chunk, an uncompressed reduce-scatter
// inside each host (NCCL over NVLink/PCIe), the compressed allgather across hosts among the ranks
// that hold the same slice, and an allgather inside the host. Every host must have the same number
// of ranks. The slices, random streams and arithmetic are the CPU hierarchical algorithm's
// (qcomm/topology.h), so with two ranks per host and two hosts the result equals the CPU
// Communicator's with algorithm=hierarchical bit for bit (with more ranks per host only the order
// in which the reduce-scatter adds may differ).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <istream>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "qcomm/codec.h"
#include "qcomm/communicator.h"
#include "qcomm/cuda_buffer.h"
#include "qcomm/device_transport.h"
#include "qcomm/status.h"
#include "qcomm/topology.h"

namespace qcomm {

struct GpuCommunicatorOptions {
  // A QSGD spec; the same default as CommunicatorOptions::codec.
  std::string codec = "qsgd:bits=4,bucket=512,norm=max,layout=compact,random_bits=16";
  bool errorFeedback = false;
  uint64_t seed = 0;
  int64_t minCompressNumel = 16384;  // smaller tensors: uncompressed allreduce
  int64_t chunkNumel = int64_t{1} << 22;
  // Alone, a rank's mean is its own tensor: like the CPU path, the GPU path then skips the codec.
  // True runs the whole compressed pipeline anyway (tests of a single-GPU setup).
  bool compressSingleRank = false;
  // kAllgather (flat) or kHierarchical (above). One rank per host: flat; one host: the
  // reduce-scatter and allgather only, nothing compressed.
  Algorithm algorithm = Algorithm::kAllgather;
  // Ranks per host for kHierarchical, in blocks of consecutive ranks; 0: QCOMM_RANKS_PER_HOST,
  // else the ranks' host names (and network namespaces).
  int ranksPerHost = 0;

  std::string describe() const;
  // The checks that need no transport and no GPU (create() makes them too).
  Status validate() const;
};

// Where the time of the last call went (CUDA events; with `timePhases`, phases are serialized to
// measure them, so the total is then not the pipelined time).
struct GpuPhaseTimes {
  double encodeMs = 0, exchangeMs = 0, decodeMs = 0;
};

class GpuCommunicator {
 public:
  // Checks the options and that every rank has the same ones; kHierarchical splits the transport
  // into the ranks of each host and those that hold the same slice (collective).
  static Result<std::unique_ptr<GpuCommunicator>> create(transport::DeviceTransport& transport,
                                                         const GpuCommunicatorOptions& options);
  ~GpuCommunicator();
  GpuCommunicator(const GpuCommunicator&) = delete;
  GpuCommunicator& operator=(const GpuCommunicator&) = delete;

  // data[0, n) (device memory) becomes the mean over ranks, ordered on `stream`.
  Status allreduceMean(float* data, int64_t n, const std::string& key, cudaStream_t stream);
  // Waits for `stream` through the transport (timeouts and asynchronous errors surface here).
  Status synchronize(cudaStream_t stream);

  // Error-feedback state for checkpoints: the step and the device residuals by key, in the CPU
  // Communicator's archive layout (Boost.Serialization binary), copied through host memory on
  // `stream` after the calls queued there (saveState waits for them). loadState reads `in` to its
  // end, allocates no more than its size justifies, and refuses an archive of other options.
  Status saveState(std::ostream& out, cudaStream_t stream);
  Status loadState(std::istream& in, cudaStream_t stream);
  void resetState();

  // Serializes the phases and times them with events (for the benchmark).
  void setTimePhases(bool on) { timePhases_ = on; }
  const GpuPhaseTimes& lastPhaseTimes() const { return times_; }
  uint64_t bytesSent() const { return bytesSent_; }
  // Of bytesSent(): what left this rank for another host (kHierarchical; flat: every byte counts).
  uint64_t bytesSentAcrossHosts() const { return bytesSentAcrossHosts_; }
  // The ranks by host as this communicator sees them ("2 hosts x {2, 2} ranks").
  const HostLayout& layout() const { return layout_; }

 private:
  struct Slot;
  GpuCommunicator(transport::DeviceTransport& transport, GpuCommunicatorOptions options,
                  QsgdOptions codec);
  Status setUpHierarchy();
  // Pipeline slots for codes of up to `values` values from `peers` ranks, and (hierarchical)
  // slices of up to `values` floats.
  Status ensureSlots(int64_t values, int peers, bool slices);
  Status compressed(float* data, int64_t n, uint32_t tensorId, uint64_t step, float* residual,
                    cudaStream_t stream);
  Status hierarchical(float* data, int64_t n, uint32_t tensorId, uint64_t step, float* residual,
                      cudaStream_t stream);

  transport::DeviceTransport& transport_;
  GpuCommunicatorOptions options_;
  QsgdOptions codec_;
  uint64_t step_ = 0;
  uint64_t bytesSent_ = 0;
  uint64_t bytesSentAcrossHosts_ = 0;
  HostLayout layout_;
  // kHierarchical: the ranks of this host, and (several hosts) the ranks holding the same slice.
  std::unique_ptr<transport::DeviceTransport> intra_, cross_;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;  // the caller's data ready; the last transfer done
  bool timePhases_ = false;
  GpuPhaseTimes times_;
  cudaStream_t commStream_ = nullptr;
  std::unique_ptr<Slot[]> slots_;  // two, for the pipeline
  int64_t slotValues_ = 0;
  int slotPeers_ = 0;
  bool slotSlices_ = false;
  cuda::DeviceBuffer<float> work_;
  cuda::DeviceBuffer<uint8_t> workspace_;
  std::map<std::string, cuda::DeviceBuffer<float>> residuals_;
};

}  // namespace qcomm
