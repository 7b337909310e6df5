#include "qcomm/env.h"

#include <array>
#include <charconv>
#include <cstdlib>

namespace qcomm {
namespace {

constexpr std::array<KnobInfo, 6> kKnobs = {{
    {Knob::kNumThreads, "QCOMM_NUM_THREADS", "0",
     "threads used by CPU codecs; 0 means one per available core"},
    {Knob::kCpuIsa, "QCOMM_CPU_ISA", "auto",
     "CPU codec kernels: auto, generic, avx2 or avx512 (words are identical on all of them)"},
    {Knob::kWireCrc, "QCOMM_WIRE_CRC", "1",
     "1 appends a CRC32C of the payload to every wire message, 0 leaves it out"},
    {Knob::kRanksPerHost, "QCOMM_RANKS_PER_HOST", "0",
     "ranks per host for hierarchical allreduce and auto (ranks [0,K) on host 0, ...); 0 asks "
     "the transport"},
    {Knob::kDebug, "QCOMM_DEBUG", "0",
     "1 prints, on rank 0, the host layout, what auto measured and each call's choice"},
    {Knob::kTimeout, "QCOMM_TIMEOUT", "300",
     "seconds a Communicator's collective waits for the other ranks before it fails with "
     "DeadlineExceeded naming them (0: forever); CommunicatorOptions::timeout overrides it"},
}};

}  // namespace

std::span<const KnobInfo> knobs() { return kKnobs; }

const KnobInfo& knobInfo(Knob knob) { return kKnobs[static_cast<int>(knob)]; }

std::string knobString(Knob knob) {
  const KnobInfo& info = knobInfo(knob);
  const char* value = std::getenv(std::string(info.name).c_str());
  if (value == nullptr || value[0] == '\0') return std::string(info.defaultValue);
  return value;
}

Result<int64_t> knobInt(Knob knob, int64_t minValue, int64_t maxValue) {
  const std::string text = knobString(knob);
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) {
    return invalidArgument(knobInfo(knob).name, "='", text, "' is not an integer");
  }
  if (value < minValue || value > maxValue) {
    return invalidArgument(knobInfo(knob).name, "=", value, " is outside [", minValue, ", ",
                           maxValue, "]");
  }
  return value;
}

}  // namespace qcomm
