#include "npy.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>

namespace qcomm::launcher {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr int64_t kMaxCount = int64_t{1} << 56;

// The value of `key` in the header dict, as written ('descr': '<f4', 'shape': (2, 3), ...).
std::string field(const std::string& header, const std::string& key) {
  const std::regex pattern("'" + key + "'\\s*:\\s*('[^']*'|\\([^)]*\\)|True|False)");
  std::smatch match;
  return std::regex_search(header, match, pattern) ? match[1].str() : std::string();
}

}  // namespace

int64_t NpyArray::count() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Result<std::vector<uint8_t>> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ioError("cannot open '", path, "' for reading");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) return ioError("error reading '", path, "'");
  return bytes;
}

Status writeFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return ioError("cannot open '", path, "' for writing");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return ioError("error writing '", path, "'");
  return Status::ok();
}

Result<NpyArray> parseNpy(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0) {
    return dataLoss(name, ": not an .npy file (missing the \\x93NUMPY magic)");
  }
  const int major = bytes[6];
  size_t headerLength = 0, offset = 0;
  if (major == 1) {
    headerLength = bytes[8] | (size_t{bytes[9]} << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return dataLoss(name, ": truncated .npy header");
    headerLength =
        bytes[8] | (size_t{bytes[9]} << 8) | (size_t{bytes[10]} << 16) | (size_t{bytes[11]} << 24);
    offset = 12;
  } else {
    return dataLoss(name, ": unsupported .npy format version ", major);
  }
  if (bytes.size() < offset + headerLength) return dataLoss(name, ": truncated .npy header");
  const std::string header(bytes.begin() + offset, bytes.begin() + offset + headerLength);
  NpyArray array;
  const std::string descr = field(header, "descr");
  if (descr == "'<f4'") {
    array.dtype = DType::kFloat32;
  } else if (descr == "'<f8'") {
    array.dtype = DType::kFloat64;
  } else {
    return invalidArgument(name, ": dtype ", descr.empty() ? "(missing)" : descr,
                           " is not supported; qcomm reads little-endian float32 ('<f4') and "
                           "float64 ('<f8')");
  }
  const std::string order = field(header, "fortran_order");
  if (order != "False") {
    return invalidArgument(name,
                           ": Fortran-ordered arrays are not supported "
                           "(save with np.ascontiguousarray)");
  }
  const std::string shape = field(header, "shape");
  if (shape.empty()) return dataLoss(name, ": .npy header has no shape");
  static const std::regex number("\\d+");
  int64_t count = 1;
  for (auto it = std::sregex_iterator(shape.begin(), shape.end(), number);
       it != std::sregex_iterator(); ++it) {
    const std::string digits = it->str();
    if (digits.size() > 17) return outOfRange(name, ": dimension ", digits, " is too large");
    const int64_t d = std::stoll(digits);
    if (d != 0 && count > kMaxCount / d) return outOfRange(name, ": more than 2^56 values");
    count *= d;
    array.shape.push_back(d);
  }
  const size_t itemsize = array.dtype == DType::kFloat32 ? 4 : 8;
  const size_t dataStart = offset + headerLength;
  const size_t expected = static_cast<size_t>(count) * itemsize;
  if (bytes.size() - dataStart != expected) {
    return dataLoss(name, ": shape ", shape, " needs ", expected, " data bytes, the file has ",
                    bytes.size() - dataStart);
  }
  array.data.assign(bytes.begin() + dataStart, bytes.end());
  return array;
}

Result<NpyArray> readNpy(const std::string& path) {
  QCOMM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, readFile(path));
  return parseNpy(bytes, path);
}

std::vector<uint8_t> formatNpy(const NpyArray& array) {
  // Python tuple syntax: (), (5,), (2, 3).
  std::string shape = "(";
  for (size_t i = 0; i < array.shape.size(); ++i) {
    shape += (i > 0 ? ", " : "") + std::to_string(array.shape[i]);
  }
  shape += array.shape.size() == 1 ? ",)" : ")";
  std::string header = "{'descr': '" + std::string(array.dtype == DType::kFloat32 ? "<f4" : "<f8") +
                       "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so that the data starts on a 64-byte boundary; end with a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::vector<uint8_t> out(kMagic, kMagic + 6);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(header.size() & 0xFF));
  out.push_back(static_cast<uint8_t>(header.size() >> 8));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), array.data.begin(), array.data.end());
  return out;
}

Status writeNpy(const std::string& path, const NpyArray& array) {
  return writeFile(path, formatNpy(array));
}

}  // namespace qcomm::launcher
