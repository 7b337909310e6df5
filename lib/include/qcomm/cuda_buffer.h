// DeviceBuffer<T>: RAII for a cudaMalloc'd array (tests, benchmarks and tools; the launchers
// themselves never allocate).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "qcomm/status.h"

namespace qcomm::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { reset(); }

  // Allocates `size` elements (none for 0); the error names the size.
  static Result<DeviceBuffer> allocate(size_t size) {
    DeviceBuffer buffer;
    if (size > 0) {
      const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&buffer.data_), size * sizeof(T));
      if (e != cudaSuccess) {
        return internalError("cudaMalloc of ", size * sizeof(T), " bytes failed: ",
                             cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
      }
      buffer.size_ = size;
    }
    return buffer;
  }

  T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void reset() {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace qcomm::cuda
