// The error-feedback state of an engine, as a checkpoint holds it (Boost.Serialization binary
// archive): the options' description, the step, the residuals by tensor key and (CPU) sra's owner
// residuals and what `auto` measured. The CPU Communicator and the GpuCommunicator (whose
// residuals live on the device) write and read the same layout.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/status.h"

namespace qcomm::collectives {

using ResidualTable = std::map<std::string, std::vector<float>>;

struct StateArchive {
  std::string describe;
  uint64_t step = 0;
  ResidualTable residuals, ownerResiduals;
  std::vector<double> costs;
};

// Writes the fields straight from where the engine keeps them (no copy of the residuals); `what`
// starts the error messages ("saving communicator state").
Status writeStateArchive(const std::string& describe, uint64_t step,
                         const ResidualTable& residuals, const ResidualTable& ownerResiduals,
                         const std::vector<double>& costs, std::ostream& out,
                         std::string_view what);
// Reads `in` to its end, allocating no more than its size justifies (a forged length is a
// DataLoss), and refuses an archive whose description is not `expectedDescribe`
// (FailedPrecondition naming both).
Status readStateArchive(std::istream& in, const std::string& expectedDescribe,
                        std::string_view what, StateArchive* out);

}  // namespace qcomm::collectives
