// Borrowing a tensor through DLPack (https://dmlc.github.io/dlpack/latest/): the struct layout of
// the stable (unversioned) ABI, written here from the specification, and a checked view of a
// "dltensor" capsule. The capsule keeps ownership: the view is valid while the capsule is alive.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace qcomm::python {

namespace dlpack {
enum DeviceType : int32_t { kCpu = 1, kCuda = 2, kCudaHost = 3, kCudaManaged = 13 };
enum TypeCode : uint8_t { kInt = 0, kUInt = 1, kFloat = 2, kBfloat = 4 };
struct Device {
  int32_t deviceType;
  int32_t deviceId;
};
struct DataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null means C-contiguous
  uint64_t byteOffset;
};
struct ManagedTensor {
  Tensor tensor;
  void* managerContext;
  void (*deleter)(ManagedTensor*);
};
}  // namespace dlpack

struct DlpackView {
  void* data = nullptr;  // data + byte offset
  int64_t count = 0;     // elements
  int32_t deviceType = 0;
  int32_t deviceId = 0;
  dlpack::DataType dtype{};
};

inline std::string deviceName(int32_t type) {
  switch (type) {
    case dlpack::kCpu: return "cpu";
    case dlpack::kCuda: return "cuda";
    case dlpack::kCudaHost: return "cuda_host";
    case dlpack::kCudaManaged: return "cuda_managed";
    default: return "device type " + std::to_string(type);
  }
}

inline std::string dtypeName(dlpack::DataType t) {
  const char* kind = t.code == dlpack::kFloat    ? "float"
                     : t.code == dlpack::kInt    ? "int"
                     : t.code == dlpack::kUInt   ? "uint"
                     : t.code == dlpack::kBfloat ? "bfloat"
                                                 : "type";
  std::string name = kind + std::to_string(t.bits);
  if (t.lanes != 1) name += "x" + std::to_string(t.lanes);
  return name;
}

// Reads a "dltensor" capsule (from x.__dlpack__()); `what` names the argument in errors. Refuses
// non-contiguous tensors.
inline DlpackView viewCapsule(const pybind11::capsule& capsule, const std::string& what) {
  if (std::string(capsule.name() ? capsule.name() : "") != "dltensor") {
    throw pybind11::type_error(what + ": expected an unused DLPack capsule (x.__dlpack__())");
  }
  const auto* managed = capsule.get_pointer<dlpack::ManagedTensor>();
  const dlpack::Tensor& t = managed->tensor;
  DlpackView v;
  v.count = 1;
  int64_t expected = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.strides != nullptr && t.shape[d] > 1 && t.strides[d] != expected) {
      throw pybind11::value_error(what + " must be contiguous (C order)");
    }
    expected *= t.shape[d];
    v.count *= t.shape[d];
  }
  v.data = static_cast<char*>(t.data) + t.byteOffset;
  v.deviceType = t.device.deviceType;
  v.deviceId = t.device.deviceId;
  v.dtype = t.dtype;
  return v;
}

}  // namespace qcomm::python
