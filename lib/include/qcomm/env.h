// The one registry of QCOMM_* environment knobs. Every knob qcomm reads is declared in env.cc's
// table, with its default and meaning; nothing else in the library calls getenv.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "qcomm/status.h"

namespace qcomm {

enum class Knob : int {
  kNumThreads = 0,  // QCOMM_NUM_THREADS
  kCpuIsa = 1,      // QCOMM_CPU_ISA
  kWireCrc = 2,     // QCOMM_WIRE_CRC
  kRanksPerHost = 3,  // QCOMM_RANKS_PER_HOST
  kDebug = 4,         // QCOMM_DEBUG
  kTimeout = 5,       // QCOMM_TIMEOUT
};

struct KnobInfo {
  Knob knob;
  std::string_view name;
  std::string_view defaultValue;
  std::string_view help;
};

// All knobs, in declaration order (for `qcomm env` and the docs).
std::span<const KnobInfo> knobs();
const KnobInfo& knobInfo(Knob knob);

// The knob's value: the environment's if set and non-empty, else the default.
std::string knobString(Knob knob);
// Parses the knob as an integer in [minValue, maxValue]; the error names the variable and the
// value.
Result<int64_t> knobInt(Knob knob, int64_t minValue, int64_t maxValue);

}  // namespace qcomm
