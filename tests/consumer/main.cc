// Encodes, ships through the wire format and decodes with nothing but the installed headers.
#include <cmath>
#include <cstdio>
#include <vector>

#include "qcomm/codec.h"
#include "qcomm/wire.h"

int main() {
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * float(i));
  qcomm::QsgdOptions options;
  options.bits = 8;
  options.bucketSize = 128;
  qcomm::Result<qcomm::EncodedTensor> encoded =
      qcomm::qsgdEncode(std::span<const float>(x), options, {42, 0, 0, 0});
  if (!encoded.isOk()) return std::printf("encode: %s\n", encoded.status().toString().c_str()), 1;
  auto wire = qcomm::toWire(*encoded);
  if (!wire.isOk()) return std::printf("wire: %s\n", wire.status().toString().c_str()), 1;
  auto back = qcomm::fromWire(*wire);
  if (!back.isOk()) return std::printf("parse: %s\n", back.status().toString().c_str()), 1;
  std::vector<float> y(x.size());
  if (!qcomm::qsgdDecode(*back, std::span<float>(y)).isOk()) return 1;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::fabs(y[i] - x[i]) > back->scales[i / 128] / 255 * 1.0001) {
      return std::printf("value %zu off: %g vs %g\n", i, y[i], x[i]), 1;
    }
  }
  std::printf("consumer ok: %zu bytes on the wire for %zu values\n", wire->size(), x.size());
  return 0;
}
