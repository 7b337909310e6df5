// The block quantizers' CUDA launchers: check arguments, plan on the host, enqueue. Never
// synchronize, never allocate.
#include <algorithm>

#include "codec/cuda/cuda_status.h"
#include "codec/cuda/qsgd_plan.h"
#include "codec/cuda/quant_kernels.h"
#include "codec/quant_format.h"
#include "qcomm/cuda_codec.h"

namespace qcomm::cuda {
namespace detail {

Result<QuantPlan> planQuant(int64_t count, const QuantOptions& options, int64_t blockSize,
                            const RandomKey& key) {
  if (count < 0) return invalidArgument("count is negative: ", count);
  QCOMM_RETURN_IF_ERROR(options.validate());
  const bool cast = options.kind == QuantKind::kFp16 || options.kind == QuantKind::kBf16;
  if (blockSize < 1 && !cast) return invalidArgument("block size must be >= 1, got ", blockSize);
  if (options.kind == QuantKind::kPercentile && blockSize > kMaxPercentileBlock) {
    return invalidArgument("percentile on the GPU sorts each block in shared memory: blocks of at "
                           "most ", kMaxPercentileBlock, " values, got ", blockSize);
  }
  QuantPlan plan{};
  plan.kind = options.kind;
  plan.bits = options.bits;
  plan.symmetric = options.symmetric;
  plan.stochastic = options.rounding == Rounding::kStochastic;
  plan.randomBits = options.randomBits;
  plan.count = count;
  plan.blockSize = cast ? std::max<int64_t>(count, 1) : blockSize;
  plan.numBlocks = cast || count == 0 ? 0 : (count + blockSize - 1) / blockSize;
  plan.wordCount = quant::wordsFor(count, options.bits);
  plan.percentile = options.percentile;
  plan.key = qsgd::philoxKey(key.seed, key.rank, key.tensorId);
  plan.step = key.step;
  const std::span<const float, 256> map = dynamicMap();
  std::copy(map.begin(), map.end(), plan.map);
  return plan;
}

}  // namespace detail

namespace {

bool hasZeroPoints(const QuantOptions& o) {
  return o.kind == QuantKind::kRowwise ||
         (!o.symmetric && (o.kind == QuantKind::kLinear || o.kind == QuantKind::kPercentile));
}

}  // namespace

Status quantize(const float* values, int64_t count, const QuantOptions& options,
                int64_t blockSize, const RandomKey& key, float* scales, float* zeroPoints,
                uint64_t* words, cudaStream_t stream) {
  QCOMM_ASSIGN_OR_RETURN(const detail::QuantPlan plan,
                         detail::planQuant(count, options, blockSize, key));
  if (count == 0) return Status::ok();
  if (values == nullptr) return invalidArgument("values is a null device pointer");
  if (words == nullptr) return invalidArgument("words is a null device pointer");
  if (plan.numBlocks > 0 && scales == nullptr) return invalidArgument("scales is a null device pointer");
  if (plan.numBlocks > 0 && hasZeroPoints(options) && zeroPoints == nullptr) {
    return invalidArgument("zeroPoints is a null device pointer (", quantKindName(options.kind),
                           options.symmetric ? "" : ", asymmetric", " has zero points)");
  }
  QCOMM_CUDA_RETURN_IF_ERROR(detail::launchQuantize(
      values, plan, scales, hasZeroPoints(options) ? zeroPoints : nullptr, words, stream));
  return Status::ok();
}

Status dequantize(std::span<const DeviceQuantCode> codes, int64_t count,
                  const QuantOptions& options, int64_t blockSize, bool mean, float* out,
                  cudaStream_t stream) {
  QCOMM_ASSIGN_OR_RETURN(const detail::QuantPlan plan,
                         detail::planQuant(count, options, blockSize, {}));
  if (codes.empty() || codes.size() > static_cast<size_t>(kMaxDecodeCodes) ||
      (!mean && codes.size() != 1)) {
    return invalidArgument("dequantize takes ", mean ? "1 to 64 codes" : "one code", ", got ",
                           codes.size());
  }
  if (count == 0) return Status::ok();
  if (out == nullptr) return invalidArgument("out is a null device pointer");
  detail::QuantCodes args{};
  for (size_t c = 0; c < codes.size(); ++c) {
    if (codes[c].words == nullptr || (plan.numBlocks > 0 && codes[c].scales == nullptr) ||
        (plan.numBlocks > 0 && hasZeroPoints(options) && codes[c].zeroPoints == nullptr)) {
      return invalidArgument("code ", c, " lacks a device pointer its codec needs");
    }
    args.scales[c] = codes[c].scales;
    args.zeros[c] = hasZeroPoints(options) ? codes[c].zeroPoints : nullptr;
    args.words[c] = codes[c].words;
  }
  args.count = static_cast<int>(codes.size());
  args.mean = mean;
  QCOMM_CUDA_RETURN_IF_ERROR(detail::launchDequantize(plan, args, out, stream));
  return Status::ok();
}

}  // namespace qcomm::cuda
