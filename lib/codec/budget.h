// Loading archives within a budget: Boost reads a vector's or string's length and allocates before
// it reads the elements, so a forged length in a small file would allocate gigabytes. What is
// loaded through these types allocates from a Budget that refuses more bytes in all than the
// archive could describe (std::length_error, which loaders turn into DataLoss).
//
// The types archive exactly as std::vector, std::string and std::map<std::string,
// std::vector<float>> do in binary archives, so the file formats do not change.
#pragma once

#include <boost/archive/basic_archive.hpp>
#include <boost/serialization/collection_size_type.hpp>
#include <boost/serialization/item_version_type.hpp>
#include <boost/serialization/level.hpp>
#include <boost/serialization/tracking.hpp>
#include <boost/serialization/utility.hpp>
#include <boost/serialization/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "qcomm/status.h"

namespace qcomm::persist {

// The signature at the start of every Boost archive (binary or text), checked before Boost reads
// it (its length would be allocated first): a DataLoss naming `what` otherwise.
Status checkArchiveSignature(const std::string& bytes, bool binary, std::string_view what);

struct Budget {
  size_t remaining = 0;
  // 8 bytes of memory per byte of input covers a text archive's shortest element ("0 ") and a
  // binary archive's raw bytes.
  static Budget forArchiveOf(size_t bytes) { return Budget{8 * bytes + 4096}; }
};

template <typename T>
struct BudgetAllocator {
  using value_type = T;
  Budget* budget = nullptr;  // null: no limit (saving)
  BudgetAllocator() = default;
  explicit BudgetAllocator(Budget* b) : budget(b) {}
  template <typename U>
  BudgetAllocator(const BudgetAllocator<U>& other) : budget(other.budget) {}
  T* allocate(size_t n) {
    if (budget != nullptr) {
      if (n > budget->remaining / sizeof(T)) {
        throw std::length_error("the archive claims " + std::to_string(n) +
                                " elements, more than its size can hold");
      }
      budget->remaining -= n * sizeof(T);
    }
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, size_t n) { std::allocator<T>().deallocate(p, n); }
  template <typename U>
  bool operator==(const BudgetAllocator<U>& other) const {
    return budget == other.budget;
  }
};

template <typename T>
using BudgetVector = std::vector<T, BudgetAllocator<T>>;

// A std::string as a binary archive holds it: its length, then its bytes.
struct BudgetString {
  BudgetVector<char> chars;
  std::string str() const { return std::string(chars.begin(), chars.end()); }
};

// std::map<std::string, std::vector<float>> as a binary archive holds it, loaded into `out`.
struct BudgetFloatTable {
  Budget* budget;
  std::map<std::string, std::vector<float>>* out;
};

}  // namespace qcomm::persist

namespace boost::serialization {

template <class Archive>
void serialize(Archive& ar, qcomm::persist::BudgetString& s, const unsigned int /*version*/) {
  std::size_t length = 0;
  ar >> length;  // as binary_iarchive reads a std::string's length
  s.chars.resize(length);
  if (length > 0) ar.load_binary(s.chars.data(), length);
}

template <class Archive>
void serialize(Archive& ar, qcomm::persist::BudgetFloatTable& t, const unsigned int /*version*/) {
  using qcomm::persist::BudgetAllocator;
  // What boost/serialization/map.hpp reads: the count, the item version, then the pairs.
  collection_size_type count;
  ar >> count;
  item_version_type itemVersion(0);
  if (boost::archive::library_version_type(3) < ar.get_library_version()) ar >> itemVersion;
  for (size_t i = 0; i < count; ++i) {
    std::pair<qcomm::persist::BudgetString, qcomm::persist::BudgetVector<float>> item{
        {qcomm::persist::BudgetVector<char>(BudgetAllocator<char>(t.budget))},
        qcomm::persist::BudgetVector<float>(BudgetAllocator<float>(t.budget))};
    ar >> item;
    (*t.out)[item.first.str()].assign(item.second.begin(), item.second.end());
  }
}

}  // namespace boost::serialization

// std::vector of primitives with the standard allocator archives without class information and
// untracked (boost/serialization/vector.hpp); these must too, or the format would change.
#define QCOMM_ARCHIVE_AS_STD_VECTOR(T)                                                  \
  BOOST_CLASS_IMPLEMENTATION(qcomm::persist::BudgetVector<T>,                          \
                             boost::serialization::object_serializable)                \
  BOOST_CLASS_TRACKING(qcomm::persist::BudgetVector<T>, boost::serialization::track_never)
QCOMM_ARCHIVE_AS_STD_VECTOR(char)
QCOMM_ARCHIVE_AS_STD_VECTOR(float)
QCOMM_ARCHIVE_AS_STD_VECTOR(double)
QCOMM_ARCHIVE_AS_STD_VECTOR(int64_t)
QCOMM_ARCHIVE_AS_STD_VECTOR(uint64_t)
#undef QCOMM_ARCHIVE_AS_STD_VECTOR
BOOST_CLASS_IMPLEMENTATION(qcomm::persist::BudgetString, boost::serialization::object_serializable)
BOOST_CLASS_TRACKING(qcomm::persist::BudgetString, boost::serialization::track_never)
