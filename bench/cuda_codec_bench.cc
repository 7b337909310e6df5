// The CUDA codec's speed beside a device-to-device copy measured in the same run.
//
//   qcomm_cuda_codec_bench [--min-log2 20] [--max-log2 28] [--bits 4] [--bucket 512] [--runs 50]
//
// For each size: encode, decode, and decode-and-accumulate of P in {2, 4, 8} codes, timed with
// CUDA events after a warm-up; the median of --runs runs, inputs rotating over several buffers of
// non-zero values so no run finds its input in L2. Bandwidth counts the bytes the operation must
// move (input read once plus output written once), reported as a fraction of the copy's
// bytes-per-second (copy: 4n read + 4n written).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "qcomm/cuda_buffer.h"
#include "qcomm/cuda_codec.h"

namespace {

using qcomm::cuda::DeviceBuffer;
using qcomm::cuda::DeviceCode;

void die(const std::string& what) {
  std::fprintf(stderr, "qcomm_cuda_codec_bench: %s\n", what.c_str());
  std::exit(1);
}

void check(const qcomm::Status& s) {
  if (!s.isOk()) die(s.message());
}

void checkCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) die(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename T>
DeviceBuffer<T> allocate(size_t n) {
  qcomm::Result<DeviceBuffer<T>> b = DeviceBuffer<T>::allocate(n);
  if (!b.isOk()) die(b.status().message());
  return std::move(b).value();
}

// Median time in ms of `runs` calls of fn(run), after `warmup` untimed ones.
double medianMs(int runs, int warmup, cudaStream_t stream, const std::function<void(int)>& fn) {
  cudaEvent_t start, stop;
  checkCuda(cudaEventCreate(&start), "cudaEventCreate");
  checkCuda(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < warmup; ++i) fn(i);
  std::vector<float> times;
  for (int i = 0; i < runs; ++i) {
    checkCuda(cudaEventRecord(start, stream), "cudaEventRecord");
    fn(warmup + i);
    checkCuda(cudaEventRecord(stop, stream), "cudaEventRecord");
    checkCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    checkCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Fills with normal-ish non-zero values on the host once and copies.
void fill(DeviceBuffer<float>& d, unsigned seed) {
  std::vector<float> host(d.size());
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& v : host) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v = (static_cast<float>(x >> 40) / static_cast<float>(1 << 24) - 0.5f) * 2.0f + 1e-3f;
  }
  checkCuda(cudaMemcpy(d.data(), host.data(), d.bytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
}

}  // namespace

int main(int argc, char** argv) {
  int minLog2 = 20, maxLog2 = 28, bits = 4, runs = 50;
  int64_t bucket = 512;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::strtol(argv[i + 1], nullptr, 10);
    if (flag == "--min-log2") minLog2 = static_cast<int>(value);
    else if (flag == "--max-log2") maxLog2 = static_cast<int>(value);
    else if (flag == "--bits") bits = static_cast<int>(value);
    else if (flag == "--bucket") bucket = value;
    else if (flag == "--runs") runs = static_cast<int>(value);
    else die("unknown flag " + flag);
  }
  check(qcomm::cuda::deviceAvailable());
  cudaDeviceProp prop{};
  checkCuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const qcomm::QsgdOptions options{bits, bucket, qcomm::NormKind::kMax, qcomm::Layout::kCompact};
  cudaStream_t stream;
  checkCuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  std::printf("# %s, q=%d, bucket %lld, max norm, compact layout, median of %d runs\n", prop.name,
              bits, static_cast<long long>(bucket), runs);
  std::printf("| op | values | P | ms | GB/s | x copy |\n| --- | --- | --- | --- | --- | --- |\n");
  constexpr int kRotate = 3;
  for (int lg = minLog2; lg <= maxLog2; lg += 2) {
    const int64_t n = int64_t{1} << lg;
    const qcomm::QsgdGeometry g = qcomm::qsgdGeometry(n, options).value();
    const double inBytes = 4.0 * n;
    const double codeBytes = 8.0 * g.wordCount + 4.0 * g.numBuckets;
    std::vector<DeviceBuffer<float>> inputs;
    for (int r = 0; r < kRotate; ++r) {
      inputs.push_back(allocate<float>(n));
      fill(inputs.back(), r + 1);
    }
    DeviceBuffer<float> out = allocate<float>(n);
    const double copyMs = medianMs(runs, 3, stream, [&](int i) {
      checkCuda(cudaMemcpyAsync(out.data(), inputs[i % kRotate].data(), out.bytes(),
                                cudaMemcpyDeviceToDevice, stream),
                "cudaMemcpyAsync");
    });
    const double copyRate = 2.0 * inBytes / (copyMs * 1e-3);
    auto row = [&](const char* op, int p, double ms, double bytes) {
      const double rate = bytes / (ms * 1e-3);
      std::printf("| %s | %lld | %s | %.3f | %.1f | %.2f |\n", op, static_cast<long long>(n),
                  p > 0 ? std::to_string(p).c_str() : "-", ms, rate / 1e9, rate / copyRate);
    };
    row("copy", 0, copyMs, 2.0 * inBytes);

    const size_t wsBytes = qcomm::cuda::qsgdEncodeWorkspaceBytes(n, options).value();
    DeviceBuffer<uint8_t> workspace = allocate<uint8_t>(wsBytes);
    constexpr int kCodes = 8;
    std::vector<DeviceBuffer<float>> scales;
    std::vector<DeviceBuffer<uint64_t>> words;
    for (int c = 0; c < kCodes; ++c) {
      scales.push_back(allocate<float>(g.numBuckets));
      words.push_back(allocate<uint64_t>(g.wordCount));
    }
    const double encodeMs = medianMs(runs, 3, stream, [&](int i) {
      const int c = i % kCodes;
      check(qcomm::cuda::qsgdEncode(inputs[i % kRotate].data(), n, options,
                                    {1, static_cast<uint32_t>(c), 0, static_cast<uint64_t>(i)},
                                    scales[c].data(), words[c].data(), workspace.data(), wsBytes,
                                    stream));
    });
    row("encode", 0, encodeMs, inBytes + codeBytes);
    std::vector<DeviceCode> codes;
    for (int c = 0; c < kCodes; ++c) codes.push_back({scales[c].data(), words[c].data()});
    const double decodeMs = medianMs(runs, 3, stream, [&](int i) {
      check(qcomm::cuda::qsgdDecode(codes[i % kCodes], n, options, out.data(), stream));
    });
    row("decode", 0, decodeMs, codeBytes + inBytes);
    for (const int p : {2, 4, 8}) {
      const double ms = medianMs(runs, 3, stream, [&](int) {
        check(qcomm::cuda::qsgdDecodeMean(std::span<const DeviceCode>(codes.data(), p), n, options,
                                          out.data(), stream));
      });
      row("decode-mean", p, ms, p * codeBytes + inBytes);
    }
  }
  checkCuda(cudaStreamDestroy(stream), "cudaStreamDestroy");
  return 0;
}
