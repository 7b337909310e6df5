// Codec specs are "name:key=value,key=value"; this walks the items after the name for every
// codec's parser (QSGD's in collectives/algorithm.cc, the quantizers' in quant/quant_options.cc).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "qcomm/status.h"

namespace qcomm {

// Calls fn(key, value) for each item; an item without '=' is an error naming the spec.
inline Status forEachSpecItem(
    std::string_view spec,
    const std::function<Status(std::string_view key, std::string_view value)>& fn) {
  const size_t colon = spec.find(':');
  std::string_view rest = colon == std::string_view::npos ? "" : spec.substr(colon + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? "" : rest.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return invalidArgument("codec spec '", std::string(spec), "': '", std::string(item),
                             "' is not key=value");
    }
    QCOMM_RETURN_IF_ERROR(fn(item.substr(0, eq), item.substr(eq + 1)));
  }
  return Status::ok();
}

}  // namespace qcomm
