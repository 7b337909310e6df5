// _qcomm's CUDA entry points: the CUDA codec on tensors borrowed through DLPack (torch or cupy
// CUDA tensors), launched on the stream the caller names. The qcomm package allocates the outputs
// with the input's own library, so the words stay on the device.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "dlpack_view.h"
#include "qcomm/codec.h"

#ifdef QCOMM_HAVE_CUDA
#include "qcomm/cuda_codec.h"
#endif

namespace py = pybind11;

namespace qcomm::python {
namespace {

#ifdef QCOMM_HAVE_CUDA

void check(const Status& status) {
  if (!status.isOk()) throw py::value_error(status.message());
}

QsgdOptions optionsOf(int bits, int64_t bucketSize, const std::string& norm,
                      const std::string& layout, int randomBits = QsgdOptions{}.randomBits) {
  QsgdOptions options;
  options.bits = bits;
  options.randomBits = randomBits;
  options.bucketSize = bucketSize;
  Result<NormKind> n = parseNormKind(norm);
  Result<Layout> l = parseLayout(layout);
  check(n.status());
  check(l.status());
  options.norm = n.value();
  options.layout = l.value();
  check(options.validate());
  return options;
}

// A CUDA tensor of `bits`-bit elements of one of `codes`, with `count` elements (-1: any).
DlpackView deviceTensor(const py::capsule& capsule, const std::string& what, uint8_t code,
                        uint8_t bits, int64_t count, bool anyInteger = false) {
  const DlpackView v = viewCapsule(capsule, what);
  if (v.deviceType != dlpack::kCuda && v.deviceType != dlpack::kCudaManaged) {
    throw py::value_error(what + " must be on a CUDA device, got " + deviceName(v.deviceType));
  }
  const bool integer = v.dtype.code == dlpack::kInt || v.dtype.code == dlpack::kUInt;
  if (v.dtype.lanes != 1 || v.dtype.bits != bits ||
      (anyInteger ? !integer : v.dtype.code != code)) {
    throw py::value_error(what + " must be " +
                          (anyInteger ? "a " + std::to_string(bits) + "-bit integer"
                                      : dtypeName({code, bits, 1})) +
                          " tensor, got " + dtypeName(v.dtype));
  }
  if (count >= 0 && v.count != count) {
    throw py::value_error(what + " must hold " + std::to_string(count) + " elements, got " +
                          std::to_string(v.count));
  }
  return v;
}

cudaStream_t streamOf(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

void encode(const py::capsule& values, const py::capsule& scales, const py::capsule& words,
            const py::capsule& workspace, int bits, int64_t bucketSize, const std::string& norm,
            const std::string& layout, int randomBits, uint64_t seed, uint32_t rank,
            uint32_t tensorId, uint64_t step, uintptr_t stream) {
  const QsgdOptions options = optionsOf(bits, bucketSize, norm, layout, randomBits);
  const DlpackView v = deviceTensor(values, "values", dlpack::kFloat, 32, -1);
  const Result<QsgdGeometry> g = qsgdGeometry(v.count, options);
  check(g.status());
  const DlpackView s = deviceTensor(scales, "scales", dlpack::kFloat, 32, g->numBuckets);
  const DlpackView w = deviceTensor(words, "words", dlpack::kUInt, 64, g->wordCount, true);
  const DlpackView ws = viewCapsule(workspace, "workspace");
  check(cuda::qsgdEncode(static_cast<const float*>(v.data), v.count, options,
                         RandomKey{seed, rank, tensorId, step}, static_cast<float*>(s.data),
                         static_cast<uint64_t*>(w.data), ws.data,
                         static_cast<size_t>(ws.count) * ws.dtype.bits / 8, streamOf(stream)));
}

void decode(const py::capsule& scales, const py::capsule& words, const py::capsule& out,
            int bits, int64_t bucketSize, const std::string& norm, const std::string& layout,
            uintptr_t stream) {
  const QsgdOptions options = optionsOf(bits, bucketSize, norm, layout);
  const DlpackView o = deviceTensor(out, "out", dlpack::kFloat, 32, -1);
  const Result<QsgdGeometry> g = qsgdGeometry(o.count, options);
  check(g.status());
  const DlpackView s = deviceTensor(scales, "code['norm']", dlpack::kFloat, 32, g->numBuckets);
  const DlpackView w = deviceTensor(words, "code['neo']", dlpack::kUInt, 64, g->wordCount, true);
  check(cuda::qsgdDecode({static_cast<const float*>(s.data), static_cast<const uint64_t*>(w.data)},
                         o.count, options, static_cast<float*>(o.data), streamOf(stream)));
}

#endif  // QCOMM_HAVE_CUDA

}  // namespace

void defineCuda(py::module_& m) {
#ifdef QCOMM_HAVE_CUDA
  m.attr("built_with_cuda") = true;
  m.def("cuda_workspace_bytes", [](int64_t count, int bits, int64_t bucketSize,
                                   const std::string& norm, const std::string& layout) {
    const Result<size_t> bytes =
        cuda::qsgdEncodeWorkspaceBytes(count, optionsOf(bits, bucketSize, norm, layout));
    check(bytes.status());
    return bytes.value();
  });
  m.def("cuda_encode", &encode);
  m.def("cuda_decode", &decode);
#else
  m.attr("built_with_cuda") = false;
#endif
  // What a capsule holds (device, dtype, element count): lets Python name what is wrong.
  m.def("dlpack_describe", [](const py::capsule& capsule) {
    const DlpackView v = viewCapsule(capsule, "tensor");
    return py::make_tuple(deviceName(v.deviceType), dtypeName(v.dtype), v.count);
  });
}

}  // namespace qcomm::python
