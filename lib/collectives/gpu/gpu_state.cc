// The GpuCommunicator's checkpoint: its device residuals and step in the CPU Communicator's
// archive layout (collectives/state_archive.h), copied through host memory on the caller's stream.
#include <istream>
#include <ostream>

#include "codec/cuda/cuda_status.h"
#include "collectives/state_archive.h"
#include "qcomm/gpu_communicator.h"

namespace qcomm {

Status GpuCommunicator::saveState(std::ostream& out, cudaStream_t stream) {
  collectives::ResidualTable residuals;
  for (const auto& [key, buffer] : residuals_) {
    std::vector<float>& host = residuals[key];
    host.resize(buffer.size());
    if (buffer.size() == 0) continue;
    QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host.data(), buffer.data(), buffer.bytes(),
                                               cudaMemcpyDeviceToHost, stream));
  }
  // The copies follow the calls queued on `stream`; the archive waits for them.
  QCOMM_RETURN_IF_ERROR(synchronize(stream));
  return collectives::writeStateArchive(options_.describe(), step_, residuals, {}, {}, out,
                                        "saving GPU communicator state");
}

Status GpuCommunicator::loadState(std::istream& in, cudaStream_t stream) {
  collectives::StateArchive state;
  QCOMM_RETURN_IF_ERROR(collectives::readStateArchive(in, options_.describe(),
                                                      "loading GPU communicator state", &state));
  if (!state.ownerResiduals.empty()) {
    return failedPrecondition("loading GPU communicator state: the archive holds sra owner "
                              "residuals, which the GPU engine does not keep");
  }
  std::map<std::string, cuda::DeviceBuffer<float>> residuals;  // replaces residuals_ when all landed
  for (const auto& [key, host] : state.residuals) {
    QCOMM_ASSIGN_OR_RETURN(cuda::DeviceBuffer<float> buffer,
                           cuda::DeviceBuffer<float>::allocate(host.size()));
    if (!host.empty()) {
      QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buffer.data(), host.data(), buffer.bytes(),
                                                 cudaMemcpyHostToDevice, stream));
    }
    residuals.emplace(key, std::move(buffer));
  }
  // The host copies must outlive the transfers.
  QCOMM_RETURN_IF_ERROR(synchronize(stream));
  residuals_ = std::move(residuals);
  step_ = state.step;
  return Status::ok();
}

void GpuCommunicator::resetState() { residuals_.clear(); }

}  // namespace qcomm
