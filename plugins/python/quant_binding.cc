// _qcomm's block quantizer entry points (qcomm.quantize / qcomm.dequantize build on these).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "qcomm/quantizers.h"
#include "qcomm/wire.h"
#include "held.h"

namespace py = pybind11;

namespace qcomm::python {

template <>
struct HeldName<QuantizedTensor> {
  static constexpr const char* value = "qcomm.QuantizedTensor";
};

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

// The fields of a held QuantizedTensor; words, scales and zero points view its vectors. (The
// notes' integer codes are unpacked only when asked for: unpack_codes.)
py::dict toDict(QuantizedTensor& q, const py::capsule& owner) {
  py::dict d;
  d["spec"] = quantSpec(q.options);
  d["codec"] = std::string(quantKindName(q.options.kind));
  d["bits"] = q.options.bits;
  d["symmetric"] = q.options.symmetric;
  d["block_size"] = q.blockSize;
  d["dtype"] = std::string(dtypeName(q.dtype));
  d["shape"] = py::tuple(py::cast(q.shape));
  d["flags"] = q.flags;
  d["scales"] = viewOf(q.scales, owner);
  d["zero_points"] = viewOf(q.zeroPoints, owner);
  d["words"] = viewOf(q.words, owner);
  return d;
}

py::dict toDict(QuantizedTensor&& q) {
  QuantizedTensor* held = nullptr;
  const py::capsule owner = hold(std::move(q), &held);
  return toDict(*held, owner);
}

template <typename T>
std::vector<T> copyOf(const py::handle& h) {
  const auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(h);
  if (!a) throw py::value_error("quantized fields must be numeric arrays");
  return std::vector<T>(a.data(), a.data() + a.size());
}

template <typename T>
bool sameVector(const std::vector<T>& v, const py::handle& h) {
  const auto a = py::array_t<T, py::array::c_style>::ensure(h);
  return a && static_cast<py::ssize_t>(v.size()) == a.size() &&
         (v.empty() || std::memcmp(v.data(), a.data(), sizeof(T) * v.size()) == 0);
}

// The tensor the fields stand for: the held one itself when every field still matches it (the
// words are read where they lie), else a checked copy in `copy`.
const QuantizedTensor& fromDict(const py::dict& d, QuantizedTensor* copy) {
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
  const py::array words = py::reinterpret_borrow<py::array>(d["words"]);
  const QuantizedTensor* held = py::isinstance<py::array>(d["words"]) ?
      heldBy<QuantizedTensor>(words) : nullptr;
  if (held != nullptr && held->words.data() == words.data() &&
      static_cast<py::ssize_t>(held->words.size()) == words.size() &&
      quantSpec(held->options) == quantSpec(q.options) && held->blockSize == q.blockSize &&
      held->dtype == q.dtype && held->count == q.count && held->flags == q.flags &&
      sameVector(held->scales, d["scales"]) && sameVector(held->zeroPoints, d["zero_points"])) {
    return *held;
  }
  q.scales = copyOf<double>(d["scales"]);
  q.zeroPoints = copyOf<double>(d["zero_points"]);
  q.words = copyOf<uint64_t>(d["words"]);
  check(validateQuantized(q));
  *copy = std::move(q);
  return *copy;
}

// Quantizes x; with `out` (an earlier result's words, same spec and size) into its held tensor,
// whose arrays then show the new code.
template <typename T>
py::dict quantizeArray(py::array_t<T, py::array::c_style> x, const std::string& spec,
                       const std::vector<int64_t>& shape, uint64_t seed, uint32_t rank,
                       uint32_t tensorId, uint64_t step, Executor* executor,
                       std::optional<py::array> out) {
  Result<QuantOptions> options = parseQuantSpec(spec);
  check(options.status());
  QuantizedTensor* target = nullptr;
  if (out.has_value()) {
    target = heldBy<QuantizedTensor>(*out);
    if (target == nullptr) {
      throw py::value_error("quantize: out must be a result of qcomm.quantize (its buffers are "
                            "reused), got arrays qcomm did not make");
    }
    const DType dtype = std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
    if (quantSpec(target->options) != quantSpec(options.value()) || target->count != x.size() ||
        target->shape != shape || target->dtype != dtype) {
      throw py::value_error("quantize: out holds " + std::to_string(target->count) + " " +
                            std::string(dtypeName(target->dtype)) + " values as '" +
                            quantSpec(target->options) + "' but this call quantizes " +
                            std::to_string(x.size()) + " " + std::string(dtypeName(dtype)) +
                            " values as '" + quantSpec(options.value()) + "' (or another shape)");
    }
  }
  QuantizedTensor fresh;
  Status status;
  {
    py::gil_scoped_release release;
    status = quantizeInto(std::span<const T>(x.data(), static_cast<size_t>(x.size())),
                          options.value(), RandomKey{seed, rank, tensorId, step}, shape, executor,
                          target ? target : &fresh);
  }
  check(status);
  return target ? toDict(*target, ownerOf(*out)) : toDict(std::move(fresh));
}

template <typename T>
py::array dequantizeTo(const QuantizedTensor& q, std::optional<py::array> out, Executor* executor) {
  py::array result = out.has_value() ? *out : py::array(py::array_t<T>(q.count));
  T* data = outputBuffer<T>(result, q.count, "dequantize");
  {
    py::gil_scoped_release release;
    check(dequantize(q, std::span<T>(data, static_cast<size_t>(q.count)), executor));
  }
  return result;
}

}  // namespace

void defineQuantizers(py::module_& m) {
  m.def("quantize_f32", &quantizeArray<float>);
  m.def("quantize_f64", &quantizeArray<double>);
  m.def("dequantize", [](const py::dict& d, const std::string& outDtype, Executor* executor,
                         std::optional<py::array> out) {
    QuantizedTensor copy;
    const QuantizedTensor& q = fromDict(d, &copy);
    if (outDtype == "float32") return dequantizeTo<float>(q, out, executor);
    return dequantizeTo<double>(q, out, executor);
  });
  m.def("unpack_codes", [](const py::dict& d) {
    QuantizedTensor copy;
    return toArray(unpackCodes(fromDict(d, &copy)));
  });
  m.def("quantized_to_wire", [](const py::dict& d, bool crc) {
    QuantizedTensor copy;
    const QuantizedTensor& q = fromDict(d, &copy);
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
    return toDict(std::move(q).value());
  });
  m.def("dynamic_map", [] {
    const std::span<const float, 256> map = dynamicMap();
    return toArray(std::vector<float>(map.begin(), map.end()));
  });
}

}  // namespace qcomm::python
