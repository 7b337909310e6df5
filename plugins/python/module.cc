// _qcomm: the thin pybind11 layer under the `qcomm` package. It moves numpy arrays in and out of
// the C++ codec and turns Status errors into ValueError; argument checking and the seed notebook's
// dict format live in qcomm/_codec.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "qcomm/any_codec.h"
#include "qcomm/communicator.h"
#include "qcomm/codec.h"
#include "qcomm/wire.h"
#include "held.h"

namespace py = pybind11;

namespace qcomm::python {

template <>
struct HeldName<EncodedTensor> {
  static constexpr const char* value = "qcomm.EncodedTensor";
};

void defineCuda(py::module_& m);        // cuda_binding.cc
void defineQuantizers(py::module_& m);  // quant_binding.cc
void defineEngine(py::module_& m);      // engine_binding.cc (with Gloo)
void defineGpuEngine(py::module_& m);   // gpu_engine_binding.cc (with CUDA, NCCL and Gloo)

namespace {

[[noreturn]] void raise(const Status& status) { throw py::value_error(status.message()); }

template <typename T>
T unwrap(Result<T> result) {
  if (!result.isOk()) raise(result.status());
  return std::move(result).value();
}

void check(const Status& status) {
  if (!status.isOk()) raise(status);
}

// The fields of a held EncodedTensor as a plain dict; words and scales view its vectors.
py::dict toFields(EncodedTensor& e, const py::capsule& owner) {
  py::dict d;
  d["words"] = viewOf(e.words, owner);
  d["scales"] = viewOf(e.scales, owner);
  d["bits"] = e.bits;
  d["layout"] = std::string(layoutName(e.layout));
  d["norm"] = std::string(normKindName(e.norm));
  d["dtype"] = std::string(dtypeName(e.dtype));
  d["bucket_size"] = e.bucketSize;
  d["count"] = e.count;
  d["shape"] = py::tuple(py::cast(e.shape));
  d["flags"] = e.flags;
  return d;
}

py::dict toFields(EncodedTensor&& e) {
  EncodedTensor* held = nullptr;
  const py::capsule owner = hold(std::move(e), &held);
  return toFields(*held, owner);
}

// The held tensor behind `words` when every field still matches it (the words may have been
// written through the array: they are read where they lie), else null.
const EncodedTensor* heldMatch(const py::array_t<uint64_t>& words, const py::array_t<double>& scales,
                               int bits, Layout layout, NormKind norm, DType dtype,
                               int64_t bucketSize, int64_t count, const std::vector<int64_t>& shape) {
  const EncodedTensor* e = heldBy<EncodedTensor>(words);
  if (e == nullptr || e->words.data() != words.data() ||
      static_cast<py::ssize_t>(e->words.size()) != words.size() ||
      static_cast<py::ssize_t>(e->scales.size()) != scales.size() || e->bits != bits ||
      e->layout != layout || e->norm != norm || e->dtype != dtype || e->bucketSize != bucketSize ||
      e->count != count || e->shape != shape) {
    return nullptr;
  }
  if (!e->scales.empty() &&
      std::memcmp(e->scales.data(), scales.data(), 8 * e->scales.size()) != 0) {
    return nullptr;
  }
  return e;
}

EncodedTensor fromFields(py::array_t<uint64_t, py::array::c_style | py::array::forcecast> words,
                         py::array_t<double, py::array::c_style | py::array::forcecast> scales,
                         int bits, const std::string& layout, const std::string& norm,
                         const std::string& dtype, int64_t bucketSize, int64_t count,
                         const std::vector<int64_t>& shape, uint32_t flags) {
  EncodedTensor e;
  e.bits = bits;
  e.layout = unwrap(parseLayout(layout));
  e.norm = unwrap(parseNormKind(norm));
  if (dtype != "float32" && dtype != "float64") {
    throw py::value_error("dtype must be 'float32' or 'float64', got '" + dtype + "'");
  }
  e.dtype = dtype == "float32" ? DType::kFloat32 : DType::kFloat64;
  e.bucketSize = bucketSize;
  e.count = count;
  e.shape = shape;
  e.flags = flags;
  e.words.assign(words.data(), words.data() + words.size());
  e.scales.assign(scales.data(), scales.data() + scales.size());
  check(validateEncoded(e));
  return e;
}

// Encodes x; with `out` (the words of an earlier code of the same geometry) into that code's
// held tensor, whose arrays then show the new code.
template <typename T>
py::dict encodeArray(py::array_t<T, py::array::c_style> x, int bits, int64_t bucketSize,
                     const std::string& norm, const std::string& layout, int randomBits,
                     uint64_t seed, uint32_t rank, uint32_t tensorId, uint64_t step,
                     Executor* executor, std::optional<py::array> out) {
  QsgdOptions options;
  options.bits = bits;
  options.bucketSize = bucketSize;
  options.norm = unwrap(parseNormKind(norm));
  options.layout = unwrap(parseLayout(layout));
  options.randomBits = randomBits;
  std::vector<int64_t> shape(x.shape(), x.shape() + x.ndim());
  const std::span<const T> values(x.data(), static_cast<size_t>(x.size()));
  const RandomKey key{seed, rank, tensorId, step};
  EncodedTensor* target = nullptr;
  if (out.has_value()) {
    target = heldBy<EncodedTensor>(*out);
    if (target == nullptr) {
      throw py::value_error("encode: out must be a code from qcomm.encode (its buffers are "
                            "reused), got arrays qcomm did not make");
    }
    const QsgdGeometry g = unwrap(qsgdGeometry(values.size(), options));
    const DType dtype = std::is_same_v<T, float> ? DType::kFloat32 : DType::kFloat64;
    if (static_cast<int64_t>(target->words.size()) != g.wordCount ||
        static_cast<int64_t>(target->scales.size()) != g.numBuckets || target->dtype != dtype) {
      throw py::value_error(
          "encode: out holds " + std::to_string(target->words.size()) + " words and " +
          std::to_string(target->scales.size()) + " scales of " +
          std::string(dtypeName(target->dtype)) + " but this code needs " +
          std::to_string(g.wordCount) + " and " + std::to_string(g.numBuckets) + " of " +
          std::string(dtypeName(dtype)));
    }
  }
  Status status;
  EncodedTensor fresh;
  {
    py::gil_scoped_release release;
    status = qsgdEncodeInto(values, options, key, executor, target ? target : &fresh, shape);
  }
  check(status);
  EncodedTensor& e = target ? *target : fresh;
  if (x.ndim() == 0) e.shape.clear();  // a 0-d array stays 0-d
  return target ? toFields(*target, ownerOf(*out)) : toFields(std::move(fresh));
}

template <typename T>
py::array decodeTo(const EncodedTensor& e, std::optional<py::array> out, Executor* executor) {
  py::array result = out.has_value() ? *out : py::array(py::array_t<T>(e.count));
  T* data = outputBuffer<T>(result, e.count, "decode");
  {
    py::gil_scoped_release release;
    check(qsgdDecode(e, std::span<T>(data, static_cast<size_t>(e.count)), executor));
  }
  return result;
}

// The torch hook's hot path, without dicts: float32 values straight to a wire message (no CRC:
// the collective's transport checks its own bytes) in a numpy uint8 array.
py::array_t<uint8_t> encodeMessage(py::array_t<float, py::array::c_style> x, int bits,
                                   int64_t bucketSize, const std::string& norm,
                                   const std::string& layout, uint64_t seed, uint32_t rank,
                                   uint32_t tensorId, uint64_t step, Executor* executor) {
  QsgdOptions options;
  options.bits = bits;
  options.bucketSize = bucketSize;
  options.norm = unwrap(parseNormKind(norm));
  options.layout = unwrap(parseLayout(layout));
  const std::span<const float> values(x.data(), static_cast<size_t>(x.size()));
  Result<EncodedTensor> e = invalidArgument("not run");
  {
    py::gil_scoped_release release;
    e = qsgdEncode(values, options, RandomKey{seed, rank, tensorId, step}, executor);
  }
  const EncodedTensor encoded = unwrap(std::move(e));
  py::array_t<uint8_t> message(static_cast<py::ssize_t>(unwrap(wireSize(encoded))));
  WireOptions wire;
  wire.crc = false;
  check(writeWire(encoded, wire,
                  std::span<uint8_t>(message.mutable_data(), static_cast<size_t>(message.size()))));
  return message;
}

// Any codec (a spec as the Communicator takes it) to a wire message without CRC.
py::array_t<uint8_t> encodeMessageSpec(py::array_t<float, py::array::c_style> x,
                                       const std::string& spec, uint64_t seed, uint32_t rank,
                                       uint32_t tensorId, uint64_t step, Executor* executor) {
  const CodecConfig codec = unwrap(parseAnyCodecSpec(spec));
  std::vector<uint8_t> message;
  Status status = Status::ok();
  {
    py::gil_scoped_release release;
    status = encodeWireMessage(std::span<const float>(x.data(), static_cast<size_t>(x.size())),
                               codec, RandomKey{seed, rank, tensorId, step}, false, &message,
                               executor);
  }
  check(status);
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(message.size()));
  std::memcpy(out.mutable_data(), message.data(), message.size());
  return out;
}

// The canonical form of a codec spec (raises ValueError naming what is wrong).
std::string canonicalSpec(const std::string& spec) {
  return anyCodecSpec(unwrap(parseAnyCodecSpec(spec)));
}

// Decodes the messages laid end to end in `received` (sizes[r] bytes from rank r) and writes their
// mean to `out`: a sum in rank order, then one division, in fp32 (the same operations on every
// rank, so every rank gets the same bits). With `own` >= 0 and `input`/`residual` given, it also
// writes residual = input - decode(message own) (error feedback).
void decodeMean(py::array_t<uint8_t, py::array::c_style> received, const std::vector<size_t>& sizes,
                py::array_t<float, py::array::c_style> out, int own,
                std::optional<py::array_t<float, py::array::c_style>> input,
                std::optional<py::array_t<float, py::array::c_style>> residual,
                Executor* executor) {
  const size_t m = static_cast<size_t>(out.size());
  if ((input || residual) && (!input || !residual || own < 0 || own >= static_cast<int>(sizes.size()) ||
                              static_cast<size_t>(input->size()) != m ||
                              static_cast<size_t>(residual->size()) != m)) {
    throw py::value_error("decode_mean: input and residual go together, with a valid own rank, "
                          "and must have " + std::to_string(m) + " values");
  }
  size_t total = 0;
  for (const size_t size : sizes) total += size;
  if (total != static_cast<size_t>(received.size())) {
    throw py::value_error("decode_mean: the message sizes add up to " + std::to_string(total) +
                          " bytes but " + std::to_string(received.size()) + " were received");
  }
  float* sum = out.mutable_data();
  const float* in = input ? input->data() : nullptr;
  float* res = residual ? residual->mutable_data() : nullptr;
  Status status = Status::ok();
  {
    py::gil_scoped_release release;
    std::vector<float> decoded(m);
    CodecScratch scratch;  // one block-quantized tensor for all the messages, not one each
    std::fill(sum, sum + m, 0.0f);
    const uint8_t* p = received.data();
    for (size_t r = 0; r < sizes.size() && status.isOk(); p += sizes[r], ++r) {
      status = decodeWireMessage(std::span<const uint8_t>(p, sizes[r]), decoded, executor,
                                 &scratch);
      if (!status.isOk()) {
        status = status.withContext(strCat("message from rank ", r, ": "));
        break;
      }
      for (size_t i = 0; i < m; ++i) sum[i] += decoded[i];
      if (static_cast<int>(r) == own && res != nullptr) {
        for (size_t i = 0; i < m; ++i) res[i] = in[i] - decoded[i];
      }
    }
    const float ranks = static_cast<float>(sizes.size());
    if (status.isOk()) {
      for (size_t i = 0; i < m; ++i) sum[i] /= ranks;
    }
  }
  check(status);
}

}  // namespace
}  // namespace qcomm::python

PYBIND11_MODULE(_qcomm, m) {
  using namespace qcomm;
  using namespace qcomm::python;
  m.doc() = "qcomm's C++ codec (use the `qcomm` package, not this module)";

  py::class_<Executor>(m, "Executor")
      .def(py::init([](int threads) {
             if (threads <= 0) return unwrap(Executor::fromEnvironment());
             return std::make_unique<Executor>(threads);
           }),
           py::arg("threads") = 0)
      .def_property_readonly("threads", &Executor::numThreads);

  m.def("encode_f32", &encodeArray<float>);
  m.def("encode_f64", &encodeArray<double>);
  m.def("decode",
        [](py::array_t<uint64_t, py::array::c_style | py::array::forcecast> words,
           py::array_t<double, py::array::c_style | py::array::forcecast> scales, int bits,
           const std::string& layout, const std::string& norm, const std::string& dtype,
           int64_t bucketSize, int64_t count, const std::vector<int64_t>& shape, uint32_t flags,
           const std::string& outDtype, Executor* executor,
           std::optional<py::array> out) -> py::object {
          const EncodedTensor* held =
              heldMatch(words, scales, bits, unwrap(parseLayout(layout)),
                        unwrap(parseNormKind(norm)),
                        dtype == "float64" ? DType::kFloat64 : DType::kFloat32, bucketSize, count,
                        shape);
          EncodedTensor copy;
          if (held == nullptr) {
            copy = fromFields(words, scales, bits, layout, norm, dtype, bucketSize, count, shape,
                              flags);
            held = &copy;
          }
          if (outDtype == "float32") return decodeTo<float>(*held, out, executor);
          return decodeTo<double>(*held, out, executor);
        });
  m.def("to_wire", [](py::array_t<uint64_t, py::array::c_style | py::array::forcecast> words,
                      py::array_t<double, py::array::c_style | py::array::forcecast> scales,
                      int bits, const std::string& layout, const std::string& norm,
                      const std::string& dtype, int64_t bucketSize, int64_t count,
                      const std::vector<int64_t>& shape, uint32_t flags, bool crc) {
    const EncodedTensor e =
        fromFields(words, scales, bits, layout, norm, dtype, bucketSize, count, shape, flags);
    WireOptions options;
    options.crc = crc;
    const std::vector<uint8_t> bytes = unwrap(toWire(e, options));
    return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  });
  m.def("from_wire", [](py::buffer buffer) {
    const py::buffer_info info = buffer.request();
    if (info.ndim != 1 || info.itemsize != 1) {
      throw py::type_error("from_bytes expects a bytes-like object of single bytes");
    }
    const auto* data = static_cast<const uint8_t*>(info.ptr);
    return toFields(unwrap(fromWire(std::span<const uint8_t>(data, info.size))));
  });
  defineCuda(m);
  defineQuantizers(m);
#if defined(QCOMM_HAVE_GLOO)
  defineEngine(m);
  m.attr("built_with_gloo") = true;
#else
  m.attr("built_with_gloo") = false;
#endif
#if defined(QCOMM_HAVE_GPU_ENGINE)
  defineGpuEngine(m);
  m.attr("built_with_gpu_engine") = true;
#else
  m.attr("built_with_gpu_engine") = false;
#endif
  m.def("encode_message", &encodeMessage);
  m.def("encode_message_spec", &encodeMessageSpec);
  m.def("canonical_codec_spec", &canonicalSpec);
  m.def("codec_step_bound", [](const std::string& spec) {
    return codecStepBound(unwrap(parseAnyCodecSpec(spec)));
  });
  m.def("decode_mean", &decodeMean, py::arg("received"), py::arg("sizes"), py::arg("out"),
        py::arg("own") = -1, py::arg("input") = std::nullopt, py::arg("residual") = std::nullopt,
        py::arg("executor") = nullptr);
  m.def("geometry", [](int64_t count, int bits, const std::string& layout, int64_t bucketSize) {
    QsgdOptions options;
    options.bits = bits;
    options.layout = unwrap(parseLayout(layout));
    options.bucketSize = bucketSize;
    const QsgdGeometry g = unwrap(qsgdGeometry(count, options));
    return py::make_tuple(g.valuesPerWord, g.bucketSize, g.numBuckets, g.wordCount);
  });
}
