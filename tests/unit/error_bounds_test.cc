// quantizationErrorBounds, what the benchmark's #wrong and the tests check results against: the
// windowed norms equal a brute-force computation, and real QSGD round trips (any bucket
// boundary, both norms, whole tensors) stay within them, where the old bound (a step of max |x|,
// right for the max norm only) fails the L2 norm.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/communicator.h"

namespace qcomm {
namespace {

std::vector<double> magnitudesOf(const std::vector<float>& x) {
  std::vector<double> m(x.size());
  for (size_t i = 0; i < x.size(); ++i) m[i] = std::fabs(double(x[i]));
  return m;
}

std::vector<float> testValues(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = gen() % 50 == 0 ? 20.0f * normal(gen) : normal(gen);  // some outliers
  return x;
}

TEST(ErrorBounds, WindowedNormsMatchBruteForce) {
  const std::vector<float> x = testValues(1000, 1);
  const std::vector<double> m = magnitudesOf(x);
  for (NormKind norm : {NormKind::kMax, NormKind::kL2}) {
    for (int64_t bucket : {1, 7, 64, 999, 1000, 5000, 0}) {
      CodecConfig c;
      c.qsgd = {3, bucket, norm, Layout::kCompact};
      const std::vector<double> got = quantizationErrorBounds(c, m);
      const int64_t n = 1000, w = bucket == 0 ? n : std::min<int64_t>(bucket, n) - 1;
      for (int64_t i = 0; i < n; ++i) {
        double mx = 0.0, ss = 0.0;
        for (int64_t j = std::max<int64_t>(0, i - w); j <= std::min(n - 1, i + w); ++j) {
          mx = std::max(mx, m[j]);
          ss += m[j] * m[j];
        }
        const double expected = (norm == NormKind::kMax ? mx : std::sqrt(ss)) / 7.0;
        ASSERT_NEAR(got[i], expected, 1e-9 * (1.0 + expected))
            << "bucket " << bucket << " norm " << normKindName(norm) << " value " << i;
      }
    }
  }
  EXPECT_TRUE(quantizationErrorBounds(CodecConfig{}, {}).empty());
}

TEST(ErrorBounds, NonFiniteValuesBoundOnlyTheirNeighbours) {
  // An infinity (or NaN) leaves no bound where it sits, and none is lost once it leaves the
  // window (a running sum would keep inf - inf = NaN from then on).
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> m = {1.0, inf, 1.0, 1.0, std::nan(""), 1.0, 1.0, 1.0, 1.0};
  for (NormKind norm : {NormKind::kMax, NormKind::kL2}) {
    CodecConfig c;
    c.qsgd = {1, 2, norm, Layout::kCompact};
    const std::vector<double> b = quantizationErrorBounds(c, m);
    const std::vector<bool> unbounded = {true, true, true, true, true, true, false, false, false};
    for (size_t i = 0; i < m.size(); ++i) {
      EXPECT_EQ(std::isinf(b[i]), unbounded[i]) << normKindName(norm) << " " << i;
      if (!unbounded[i]) EXPECT_FALSE(std::isnan(b[i])) << i;
    }
    EXPECT_DOUBLE_EQ(b[8], norm == NormKind::kMax ? 1.0 : std::sqrt(2.0));
  }
}

TEST(ErrorBounds, RoundTripsStayWithinAndTheOldBoundFailsL2) {
  const int64_t n = 20000;
  const std::vector<float> x = testValues(n, 2);
  const std::vector<double> m = magnitudesOf(x);
  double maxAbs = 0.0;
  for (double v : m) maxAbs = std::max(maxAbs, v);
  for (NormKind norm : {NormKind::kMax, NormKind::kL2}) {
    for (int64_t bucket : {1, 33, 512, 0}) {
      for (int bits : {1, 4, 8}) {
        CodecConfig c;
        c.qsgd = {bits, bucket, norm, Layout::kCompact};
        const std::vector<double> bound = quantizationErrorBounds(c, m);
        const double oldBound = codecStepBound(c) * maxAbs;
        bool oldFails = false;
        // Chunks cut the buckets at other places: the bound must hold for any of them.
        for (int64_t chunk : {n, int64_t{7777}}) {
          for (uint64_t seed = 0; seed < 3; ++seed) {
            for (int64_t begin = 0; begin < n; begin += chunk) {
              const int64_t len = std::min(chunk, n - begin);
              const std::span<const float> part(x.data() + begin, len);
              const EncodedTensor e = qsgdEncode(part, c.qsgd, {seed, 0, 1, 0}).value();
              std::vector<float> d(len);
              ASSERT_TRUE(qsgdDecode(e, d).isOk());
              for (int64_t i = 0; i < len; ++i) {
                const double err = std::fabs(double(d[i]) - x[begin + i]);
                ASSERT_LE(err, bound[begin + i] * (1.0 + 1e-6) + 1e-6)
                    << "bits " << bits << " bucket " << bucket << " norm "
                    << normKindName(norm) << " value " << begin + i;
                oldFails |= err > oldBound + 1e-6;
              }
            }
          }
        }
        // The old check (one step of max |x|) holds for the max norm but not for L2 buckets of
        // many values: the benchmark's false #wrong.
        if (norm == NormKind::kMax) EXPECT_FALSE(oldFails) << bits << " " << bucket;
        if (norm == NormKind::kL2 && (bucket == 0 || bucket == 512)) {
          EXPECT_TRUE(oldFails) << bits << " " << bucket;
        }
      }
    }
  }
}

TEST(ErrorBounds, BlockQuantizersScaleTheirStepByTheLargestValue) {
  CodecConfig c = parseAnyCodecSpec("linear:bits=8").value();
  const std::vector<double> m = {0.5, 2.0, 1.0};
  for (double b : quantizationErrorBounds(c, m)) EXPECT_DOUBLE_EQ(b, codecStepBound(c) * 2.0);
}

}  // namespace
}  // namespace qcomm
