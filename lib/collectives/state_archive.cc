// Writing and reading an engine's checkpoint (collectives/state_archive.h).
#include "collectives/state_archive.h"

#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/serialization/map.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#include <iterator>
#include <sstream>

#include "codec/budget.h"

namespace qcomm::collectives {

Status writeStateArchive(const std::string& describe, uint64_t step,
                         const ResidualTable& residuals, const ResidualTable& ownerResiduals,
                         const std::vector<double>& costs, std::ostream& out,
                         std::string_view what) {
  try {
    boost::archive::binary_oarchive archive(out);
    archive << describe << step << residuals << ownerResiduals << costs;
  } catch (const std::exception& e) {
    return ioError(what, ": ", e.what());
  }
  return out ? Status::ok() : ioError(what, ": the stream failed");
}

Status readStateArchive(std::istream& in, const std::string& expectedDescribe,
                        std::string_view what, StateArchive* out) {
  // The whole checkpoint first: its size bounds what loading it may allocate (codec/budget.h).
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  QCOMM_RETURN_IF_ERROR(persist::checkArchiveSignature(bytes, true, what));
  persist::Budget budget = persist::Budget::forArchiveOf(bytes.size());
  persist::BudgetString archivedDescribe{
      persist::BudgetVector<char>(persist::BudgetAllocator<char>(&budget))};
  StateArchive state;
  persist::BudgetFloatTable residualTable{&budget, &state.residuals};
  persist::BudgetFloatTable ownerTable{&budget, &state.ownerResiduals};
  persist::BudgetVector<double> archivedCosts{persist::BudgetAllocator<double>(&budget)};
  try {
    std::istringstream stream(bytes);
    boost::archive::binary_iarchive archive(stream);
    archive >> archivedDescribe >> state.step >> residualTable >> ownerTable >> archivedCosts;
  } catch (const std::exception& e) {
    return dataLoss(what, ": malformed archive (", e.what(), ")");
  }
  state.describe = archivedDescribe.str();
  state.costs.assign(archivedCosts.begin(), archivedCosts.end());
  if (state.describe != expectedDescribe) {
    return failedPrecondition(what, ": saved with '", state.describe, "' but this communicator is '",
                              expectedDescribe, "'");
  }
  *out = std::move(state);
  return Status::ok();
}

}  // namespace qcomm::collectives
