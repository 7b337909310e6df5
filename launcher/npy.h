// Reading and writing NumPy .npy files (format versions 1, 2 and 3; little-endian float32 and
// float64, C order, any shape), for `qcomm codec`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qcomm/format_types.h"
#include "qcomm/status.h"

namespace qcomm::launcher {

struct NpyArray {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // count * itemsize bytes, little-endian
  int64_t count() const;
};

// Parses an .npy image; errors name the file and what is wrong with it.
Result<NpyArray> parseNpy(const std::vector<uint8_t>& bytes, const std::string& name);
Result<NpyArray> readNpy(const std::string& path);
std::vector<uint8_t> formatNpy(const NpyArray& array);
Status writeNpy(const std::string& path, const NpyArray& array);

Result<std::vector<uint8_t>> readFile(const std::string& path);
Status writeFile(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace qcomm::launcher
