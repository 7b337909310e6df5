// The CUDA codec's launchers: check arguments, plan the geometry on the host, enqueue the kernels
// of qsgd_kernels.cu. Never synchronize, never allocate (the download/upload helpers at the end
// are the documented exceptions).
#include <cmath>
#include <limits>
#include <vector>

#include "codec/cuda/cuda_status.h"
#include "codec/cuda/qsgd_kernels.h"
#include "codec/cuda/qsgd_plan.h"
#include "qcomm/cuda_codec.h"

namespace qcomm::cuda {
namespace detail {

Result<Geometry> planGeometry(int64_t count, const QsgdOptions& options) {
  if (count < 0) return invalidArgument("count is negative: ", count);
  QCOMM_RETURN_IF_ERROR(options.validate());
  QCOMM_ASSIGN_OR_RETURN(const QsgdGeometry q, qsgdGeometry(count, options));
  Geometry g{};
  g.bits = options.bits;
  g.layout = options.layout;
  g.norm = options.norm;
  g.k = q.valuesPerWord;
  g.width = q.codeWidth;
  g.randomBits = options.randomBits;
  g.count = count;
  g.bucketSize = q.bucketSize;
  g.numBuckets = q.numBuckets;
  g.sectionFull = qsgd::sectionLength(q.bucketSize, q.valuesPerWord);
  g.wordCount = q.wordCount;
  g.tilesPerBucket = (q.bucketSize + qsgd::kNormTile - 1) / qsgd::kNormTile;
  if (q.numBuckets > 0) {
    const int64_t last = count - (q.numBuckets - 1) * q.bucketSize;
    g.numTiles = (q.numBuckets - 1) * g.tilesPerBucket + (last + qsgd::kNormTile - 1) / qsgd::kNormTile;
  }
  return g;
}

size_t encodeWorkspaceBytes(const Geometry& g) {
  if (g.bucketSize <= kFusedBucket) return 0;
  return 2 * sizeof(double) * static_cast<size_t>(g.numTiles);
}

}  // namespace detail

namespace {

using detail::Geometry;


Status requirePointer(const void* p, const char* name) {
  if (p == nullptr) return invalidArgument(name, " is a null device pointer");
  return Status::ok();
}

}  // namespace

Result<size_t> qsgdEncodeWorkspaceBytes(int64_t count, const QsgdOptions& options) {
  QCOMM_ASSIGN_OR_RETURN(const Geometry g, detail::planGeometry(count, options));
  return detail::encodeWorkspaceBytes(g);
}

Status qsgdEncode(const float* values, int64_t count, const QsgdOptions& options,
                  const RandomKey& key, float* scales, uint64_t* words, void* workspace,
                  size_t workspaceBytes, cudaStream_t stream) {
  QCOMM_ASSIGN_OR_RETURN(const Geometry g, detail::planGeometry(count, options));
  if (count == 0) return Status::ok();
  QCOMM_RETURN_IF_ERROR(requirePointer(values, "values"));
  QCOMM_RETURN_IF_ERROR(requirePointer(scales, "scales"));
  QCOMM_RETURN_IF_ERROR(requirePointer(words, "words"));
  const size_t need = detail::encodeWorkspaceBytes(g);
  if (workspaceBytes < need || (need > 0 && workspace == nullptr)) {
    return invalidArgument("qsgdEncode needs ", need, " bytes of workspace for ", count,
                           " values in buckets of ", g.bucketSize, ", got ", workspaceBytes,
                           workspace == nullptr ? " (null)" : "");
  }
  auto* tileSums = static_cast<double*>(workspace);
  double* foldScratch = tileSums == nullptr ? nullptr : tileSums + g.numTiles;
  auto* tileMaxima = reinterpret_cast<float*>(tileSums);  // only one of the two norms runs
  const detail::RandomArgs r{qsgd::philoxKey(key.seed, key.rank, key.tensorId), key.step};
  QCOMM_CUDA_RETURN_IF_ERROR(detail::launchEncode(values, g, r, scales, words, tileSums,
                                                  foldScratch, tileMaxima, stream));
  return Status::ok();
}

namespace {

Status decodeImpl(std::span<const DeviceCode> codes, int64_t count, const QsgdOptions& options,
                  float* out, bool mean, int residualOf, const float* input, float* residual,
                  cudaStream_t stream) {
  QCOMM_ASSIGN_OR_RETURN(const Geometry g, detail::planGeometry(count, options));
  if (codes.empty() || codes.size() > static_cast<size_t>(kMaxDecodeCodes)) {
    return invalidArgument("decode takes 1 to ", kMaxDecodeCodes, " codes, got ", codes.size());
  }
  if (residualOf >= static_cast<int>(codes.size())) {
    return invalidArgument("residualOf is ", residualOf, " but only ", codes.size(),
                           " codes were given");
  }
  if (count == 0) return Status::ok();
  QCOMM_RETURN_IF_ERROR(requirePointer(out, "out"));
  if (residualOf >= 0) {
    QCOMM_RETURN_IF_ERROR(requirePointer(input, "input"));
    QCOMM_RETURN_IF_ERROR(requirePointer(residual, "residual"));
  }
  detail::DecodeArgs args{};
  for (size_t c = 0; c < codes.size(); ++c) {
    if (codes[c].scales == nullptr || codes[c].words == nullptr) {
      return invalidArgument("code ", c, " has a null scales or words pointer");
    }
    args.code[c] = {codes[c].scales, codes[c].words};
  }
  args.count = static_cast<int>(codes.size());
  args.mean = mean;
  args.residualOf = residualOf;
  QCOMM_CUDA_RETURN_IF_ERROR(detail::launchDecode(g, args, out, input, residual, stream));
  return Status::ok();
}

}  // namespace

Status qsgdDecode(DeviceCode code, int64_t count, const QsgdOptions& options, float* out,
                  cudaStream_t stream) {
  return decodeImpl(std::span<const DeviceCode>(&code, 1), count, options, out, false, -1,
                    nullptr, nullptr, stream);
}

Status qsgdDecodeMean(std::span<const DeviceCode> codes, int64_t count, const QsgdOptions& options,
                      float* out, cudaStream_t stream, int residualOf, const float* input,
                      float* residual) {
  if (residualOf < -1) return invalidArgument("residualOf must be -1 or a code index, got ", residualOf);
  return decodeImpl(codes, count, options, out, true, residualOf, input, residual, stream);
}

Result<EncodedTensor> downloadCode(DeviceCode code, int64_t count, const QsgdOptions& options,
                                   cudaStream_t stream) {
  QCOMM_ASSIGN_OR_RETURN(const Geometry g, detail::planGeometry(count, options));
  EncodedTensor e;
  e.bits = options.bits;
  e.layout = options.layout;
  e.norm = options.norm;
  e.dtype = DType::kFloat32;
  e.bucketSize = g.bucketSize;
  e.count = count;
  e.shape = {count};
  std::vector<float> scales(g.numBuckets);
  e.words.resize(g.wordCount);
  if (g.numBuckets > 0) {
    QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scales.data(), code.scales,
                                               sizeof(float) * scales.size(),
                                               cudaMemcpyDeviceToHost, stream));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(e.words.data(), code.words,
                                               sizeof(uint64_t) * e.words.size(),
                                               cudaMemcpyDeviceToHost, stream));
    QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  }
  e.scales.assign(scales.begin(), scales.end());
  for (const double s : e.scales) {
    if (std::isnan(s)) e.flags |= kFlagNonFinite;
  }
  return e;
}

Status uploadCode(const EncodedTensor& encoded, float* scales, uint64_t* words,
                  cudaStream_t stream) {
  QCOMM_RETURN_IF_ERROR(validateEncoded(encoded));
  if (encoded.dtype != DType::kFloat32) {
    return invalidArgument("the CUDA codec decodes float32 codes; this one is ",
                           dtypeName(encoded.dtype));
  }
  if (encoded.count == 0) return Status::ok();
  const std::vector<float> narrow(encoded.scales.begin(), encoded.scales.end());  // exact
  QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(scales, narrow.data(), sizeof(float) * narrow.size(),
                                             cudaMemcpyHostToDevice, stream));
  QCOMM_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(words, encoded.words.data(),
                                             sizeof(uint64_t) * encoded.words.size(),
                                             cudaMemcpyHostToDevice, stream));
  QCOMM_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return Status::ok();
}

Status deviceAvailable() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess) {
    return failedPrecondition("no usable CUDA device: cudaGetDeviceCount says ",
                              cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  }
  if (devices == 0) return failedPrecondition("no CUDA device on this machine");
  return Status::ok();
}

}  // namespace qcomm::cuda
