// _qcomm's block quantizer entry points (qcomm.quantize / qcomm.dequantize build on these).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "qcomm/quantizers.h"
#include "qcomm/wire.h"

namespace py = pybind11;

namespace qcomm::python {
namespace {

void check(const Status& status) {
  if (!status.isOk()) throw py::value_error(status.message());
}

template <typename T>
py::array_t<T> toArray(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), sizeof(T) * v.size());
  return a;
}

py::dict toDict(const QuantizedTensor& q) {
  py::dict d;
  d["spec"] = quantSpec(q.options);
  d["codec"] = std::string(quantKindName(q.options.kind));
  d["bits"] = q.options.bits;
  d["symmetric"] = q.options.symmetric;
  d["block_size"] = q.blockSize;
  d["dtype"] = std::string(dtypeName(q.dtype));
  d["shape"] = py::tuple(py::cast(q.shape));
  d["flags"] = q.flags;
  d["scales"] = toArray(q.scales);
  d["zero_points"] = toArray(q.zeroPoints);
  d["words"] = toArray(q.words);
  d["codes"] = toArray(unpackCodes(q));
  return d;
}

QuantizedTensor fromDict(const py::dict& d) {
  QuantizedTensor q;
  Result<QuantOptions> options = parseQuantSpec(d["spec"].cast<std::string>());
  check(options.status());
  q.options = options.value();
  q.blockSize = d["block_size"].cast<int64_t>();
  q.options.blockSize = q.blockSize;
  const std::string dtype = d["dtype"].cast<std::string>();
  q.dtype = dtype == "float64" ? DType::kFloat64 : DType::kFloat32;
  q.shape = d["shape"].cast<std::vector<int64_t>>();
  q.count = 1;
  for (const int64_t s : q.shape) q.count *= s;
  q.flags = d["flags"].cast<uint32_t>();
  q.scales = d["scales"].cast<std::vector<double>>();
  q.zeroPoints = d["zero_points"].cast<std::vector<double>>();
  q.words = d["words"].cast<std::vector<uint64_t>>();
  check(validateQuantized(q));
  return q;
}

template <typename T>
py::dict quantizeArray(py::array_t<T, py::array::c_style> x, const std::string& spec,
                       const std::vector<int64_t>& shape, uint64_t seed, uint32_t rank,
                       uint32_t tensorId, uint64_t step) {
  Result<QuantOptions> options = parseQuantSpec(spec);
  check(options.status());
  Result<QuantizedTensor> q = invalidArgument("not run");
  {
    py::gil_scoped_release release;
    q = quantize(std::span<const T>(x.data(), static_cast<size_t>(x.size())), options.value(),
                 RandomKey{seed, rank, tensorId, step}, shape);
  }
  check(q.status());
  return toDict(q.value());
}

}  // namespace

void defineQuantizers(py::module_& m) {
  m.def("quantize_f32", &quantizeArray<float>);
  m.def("quantize_f64", &quantizeArray<double>);
  m.def("dequantize", [](const py::dict& d) {
    const QuantizedTensor q = fromDict(d);
    if (q.dtype == DType::kFloat32) {
      py::array_t<float> out(static_cast<py::ssize_t>(q.count));
      check(dequantize(q, std::span<float>(out.mutable_data(), static_cast<size_t>(q.count))));
      return py::object(out);
    }
    py::array_t<double> out(static_cast<py::ssize_t>(q.count));
    check(dequantize(q, std::span<double>(out.mutable_data(), static_cast<size_t>(q.count))));
    return py::object(out);
  });
  m.def("quantized_to_wire", [](const py::dict& d, bool crc) {
    const QuantizedTensor q = fromDict(d);
    Result<size_t> size = quantWireSize(q);
    check(size.status());
    std::string bytes(size.value(), '\0');
    check(writeQuantWire(q, crc, std::span<uint8_t>(reinterpret_cast<uint8_t*>(bytes.data()),
                                                    bytes.size())));
    return py::bytes(bytes);
  });
  m.def("quantized_from_wire", [](py::buffer buffer) {
    const py::buffer_info info = buffer.request();
    Result<QuantizedTensor> q = quantFromWire(
        std::span<const uint8_t>(static_cast<const uint8_t*>(info.ptr), info.size));
    check(q.status());
    return toDict(q.value());
  });
  m.def("dynamic_map", [] {
    const std::span<const float, 256> map = dynamicMap();
    return toArray(std::vector<float>(map.begin(), map.end()));
  });
}

}  // namespace qcomm::python
