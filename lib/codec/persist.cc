// Boost.Serialization of EncodedTensor. Scales travel as their IEEE bit patterns so that NaN
// (the non-finite marker) survives text archives, which cannot read "nan" back.
#include "qcomm/persist.h"

#include "codec/budget.h"

#include <bit>
#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/vector.hpp>
#include <cstring>
#include <exception>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <istream>
#include <ostream>

namespace qcomm {
namespace {

using persist::Budget;
using persist::BudgetAllocator;
using persist::BudgetVector;

// The archived form, versioned through Boost's class version. (Its budget vectors archive exactly
// as std::vector: codec/budget.h.)
struct Archived {
  explicit Archived(Budget* b = nullptr)
      : shape(BudgetAllocator<int64_t>(b)),
        scaleBits(BudgetAllocator<uint64_t>(b)),
        words(BudgetAllocator<uint64_t>(b)) {}
  int bits = 0;
  int layout = 0;
  int norm = 0;
  int dtype = 0;
  int64_t bucketSize = 0;
  int64_t count = 0;
  BudgetVector<int64_t> shape;
  uint32_t flags = 0;
  BudgetVector<uint64_t> scaleBits;
  BudgetVector<uint64_t> words;

  template <class Archive>
  void serialize(Archive& ar, const unsigned int /*version*/) {
    ar& bits& layout& norm& dtype& bucketSize& count& shape& flags& scaleBits& words;
  }
};

template <class OArchive>
void write(std::ostream& out, const Archived& a) {
  OArchive archive(out);
  archive << a;
}

template <class IArchive>
void read(std::istream& in, Archived& a) {
  IArchive archive(in);
  archive >> a;
}

}  // namespace

Status saveEncoded(const EncodedTensor& e, std::ostream& out, ArchiveKind kind) {
  QCOMM_RETURN_IF_ERROR(validateEncoded(e));
  Archived a;
  a.bits = e.bits;
  a.layout = static_cast<int>(e.layout);
  a.norm = static_cast<int>(e.norm);
  a.dtype = static_cast<int>(e.dtype);
  a.bucketSize = e.bucketSize;
  a.count = e.count;
  a.shape.assign(e.shape.begin(), e.shape.end());
  a.flags = e.flags;
  a.scaleBits.reserve(e.scales.size());
  for (double x : e.scales) a.scaleBits.push_back(std::bit_cast<uint64_t>(x));
  a.words.assign(e.words.begin(), e.words.end());
  try {
    if (kind == ArchiveKind::kBinary) {
      write<boost::archive::binary_oarchive>(out, a);
    } else {
      write<boost::archive::text_oarchive>(out, a);
    }
  } catch (const std::exception& ex) {
    return ioError("saving encoded tensor: ", ex.what());
  }
  if (!out) return ioError("saving encoded tensor: the output stream failed");
  return Status::ok();
}

Result<EncodedTensor> loadEncoded(std::istream& in, ArchiveKind kind) {
  // The whole archive first: its size bounds what loading it may allocate.
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  QCOMM_RETURN_IF_ERROR(persist::checkArchiveSignature(bytes, kind == ArchiveKind::kBinary,
                                                       "loading encoded tensor"));
  Budget budget = Budget::forArchiveOf(bytes.size());
  Archived a(&budget);
  try {
    std::istringstream archive(bytes);
    if (kind == ArchiveKind::kBinary) {
      read<boost::archive::binary_iarchive>(archive, a);
    } else {
      read<boost::archive::text_iarchive>(archive, a);
    }
  } catch (const std::exception& ex) {
    return dataLoss("loading encoded tensor: malformed archive (", ex.what(), ")");
  }
  if (a.layout < 0 || a.layout > 1) return dataLoss("archived layout ", a.layout, " is unknown");
  if (a.norm < 0 || a.norm > 1) return dataLoss("archived norm ", a.norm, " is unknown");
  if (a.dtype < 0 || a.dtype > 1) return dataLoss("archived dtype ", a.dtype, " is unknown");
  EncodedTensor e;
  e.bits = a.bits;
  e.layout = static_cast<Layout>(a.layout);
  e.norm = static_cast<NormKind>(a.norm);
  e.dtype = static_cast<DType>(a.dtype);
  e.bucketSize = a.bucketSize;
  e.count = a.count;
  e.shape.assign(a.shape.begin(), a.shape.end());
  e.flags = a.flags;
  e.scales.reserve(a.scaleBits.size());
  for (uint64_t bits : a.scaleBits) e.scales.push_back(std::bit_cast<double>(bits));
  e.words.assign(a.words.begin(), a.words.end());
  QCOMM_RETURN_IF_ERROR(validateEncoded(e).withContext("loading encoded tensor: "));
  return e;
}

namespace persist {

// Boost's own archive header starts with a length-prefixed signature, read (and allocated) before
// anything else: it must be the one Boost writes.
Status checkArchiveSignature(const std::string& bytes, bool binary, std::string_view what) {
  static constexpr char kSignature[] = "serialization::archive";
  constexpr size_t kLength = sizeof(kSignature) - 1;
  if (binary) {
    uint64_t length = 0;
    if (bytes.size() >= 8) std::memcpy(&length, bytes.data(), 8);
    if (bytes.size() < 8 + kLength || length != kLength ||
        bytes.compare(8, kLength, kSignature) != 0) {
      return dataLoss(what, ": not a Boost binary archive (no signature)");
    }
  } else if (bytes.compare(0, kLength + 3, "22 " + std::string(kSignature)) != 0) {
    return dataLoss(what, ": not a Boost text archive (no signature)");
  }
  return Status::ok();
}

}  // namespace persist
}  // namespace qcomm
