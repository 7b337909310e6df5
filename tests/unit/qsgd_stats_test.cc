// Lemma 3.1 of the QSGD paper (Alistarh et al., 2017), checked statistically:
//   E[Q(v)] = v  and  E||Q(v) - v||^2 <= min(n/s^2, sqrt(n)/s) ||v||^2.
// For each value the rounding is a Bernoulli(p_i) step of size scale/s, so the exact variance is
// sum_i (scale/s)^2 p_i (1 - p_i); the test compares the empirical error with it as well.
// Bounded: about 1.5M values encoded in total.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qcomm/codec.h"

namespace qcomm {
namespace {

struct Case {
  int bits;
  NormKind norm;
  Layout layout;
  int randomBits = 32;
};

class QsgdLemma31 : public ::testing::TestWithParam<Case> {};

TEST_P(QsgdLemma31, UnbiasedWithBoundedVariance) {
  const Case c = GetParam();
  constexpr int n = 256;
  constexpr int trials = 3000;
  std::mt19937 rng(c.bits * 31 + static_cast<int>(c.norm));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  v[7] = 0.0f;

  QsgdOptions o;
  o.bits = c.bits;
  o.norm = c.norm;
  o.layout = c.layout;
  o.randomBits = c.randomBits;
  std::vector<double> sum(n, 0.0);
  double sumSquaredError = 0.0;
  double scale = 0.0;
  std::vector<float> out(n);
  for (int t = 0; t < trials; ++t) {
    Result<EncodedTensor> e = qsgdEncode(std::span<const float>(v), o, {77, 0, 0, uint64_t(t)});
    ASSERT_TRUE(e.isOk());
    ASSERT_TRUE(qsgdDecode(*e, std::span<float>(out)).isOk());
    scale = e->scales[0];
    for (int i = 0; i < n; ++i) {
      sum[i] += out[i];
      sumSquaredError += (double(out[i]) - v[i]) * (double(out[i]) - v[i]);
    }
  }
  const double s = (1u << c.bits) - 1u;
  const double step = scale / s;
  double norm2 = 0.0, exactVariance = 0.0;
  for (int i = 0; i < n; ++i) {
    norm2 += double(v[i]) * v[i];
    const double y = std::fabs(v[i]) / step;
    const double p = y - std::floor(y);
    exactVariance += step * step * p * (1 - p);
    // Unbiased: the mean over trials is within 5 standard errors of v_i, plus the few ulps by which
    // the codec's fp32 y may differ from this fp64 one.
    const double standardError = step * std::sqrt(p * (1 - p) / trials);
    // 16-bit draws add a bias of at most 2^-16 of a step (docs/format.md).
    const double fp32Slack = step * (y + 1) * 0x1p-21 + (c.randomBits == 16 ? step * 0x1p-16 : 0.0);
    EXPECT_NEAR(sum[i] / trials, v[i], 5 * standardError + fp32Slack) << "value " << i;
  }
  const double empiricalVariance = sumSquaredError / trials;
  const double bound = std::min(n / (s * s), std::sqrt(double(n)) / s) * norm2;
  EXPECT_LE(exactVariance, bound);
  // The empirical error matches the exact variance (its relative noise is ~1/sqrt(trials)).
  EXPECT_NEAR(empiricalVariance, exactVariance, 0.1 * exactVariance + 1e-12);
  EXPECT_LE(empiricalVariance, 1.1 * bound);
}

INSTANTIATE_TEST_SUITE_P(BitsNormsLayouts, QsgdLemma31,
                         ::testing::Values(Case{1, NormKind::kL2, Layout::kSeed},
                                           Case{2, NormKind::kL2, Layout::kCompact, 16},
                                           Case{4, NormKind::kMax, Layout::kCompact, 16},
                                           Case{2, NormKind::kL2, Layout::kSeed},
                                           Case{4, NormKind::kL2, Layout::kCompact},
                                           Case{8, NormKind::kL2, Layout::kSeed},
                                           Case{2, NormKind::kMax, Layout::kCompact},
                                           Case{4, NormKind::kMax, Layout::kSeed},
                                           Case{16, NormKind::kMax, Layout::kCompact}),
                         [](const auto& info) {
                           return std::string(layoutName(info.param.layout)) + "_q" +
                                  std::to_string(info.param.bits) + "_" +
                                  std::string(normKindName(info.param.norm)) +
                                  (info.param.randomBits == 16 ? "_r16" : "");
                         });

}  // namespace
}  // namespace qcomm
