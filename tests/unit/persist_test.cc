// Boost.Serialization of encoded tensors: binary and text archives round-trip (NaN scales too),
// and malformed or inconsistent archives give a DataLoss instead of a crash.
#include <gtest/gtest.h>

#include <bit>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/vector.hpp>
#include <cmath>
#include <cstring>
#include <sstream>

#include "qcomm/persist.h"

namespace qcomm {
namespace {

EncodedTensor sample() {
  std::vector<float> v(777);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::cos(float(i)) * 3;
  v[700] = NAN;
  QsgdOptions o;
  o.bits = 5;
  o.bucketSize = 100;
  const int64_t shape[] = {7, 111};
  return *qsgdEncode(std::span<const float>(v), o, {9, 0, 0, 0}, nullptr, shape);
}

bool sameTensor(const EncodedTensor& a, const EncodedTensor& b) {
  if (a.scales.size() != b.scales.size()) return false;
  for (size_t i = 0; i < a.scales.size(); ++i) {
    if (!(a.scales[i] == b.scales[i] || (std::isnan(a.scales[i]) && std::isnan(b.scales[i])))) {
      return false;
    }
  }
  return a.words == b.words && a.shape == b.shape && a.flags == b.flags && a.bits == b.bits &&
         a.count == b.count && a.bucketSize == b.bucketSize && a.layout == b.layout;
}

TEST(Persist, RoundTripsInBothArchiveKinds) {
  const EncodedTensor e = sample();
  ASSERT_NE(e.flags & kFlagNonFinite, 0u);
  for (ArchiveKind kind : {ArchiveKind::kBinary, ArchiveKind::kText}) {
    std::stringstream stream;
    ASSERT_TRUE(saveEncoded(e, stream, kind).isOk());
    Result<EncodedTensor> back = loadEncoded(stream, kind);
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_TRUE(sameTensor(*back, e));
  }
}

TEST(Persist, MalformedArchivesAreDataLoss) {
  for (ArchiveKind kind : {ArchiveKind::kBinary, ArchiveKind::kText}) {
    std::stringstream garbage("this is not an archive at all");
    Result<EncodedTensor> r = loadEncoded(garbage, kind);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find("not a Boost"), std::string::npos)
        << r.status().message();
    // A truncated archive.
    std::stringstream full;
    ASSERT_TRUE(saveEncoded(sample(), full, kind).isOk());
    const std::string text = full.str();
    std::stringstream cut(text.substr(0, text.size() / 2));
    EXPECT_FALSE(loadEncoded(cut, kind).isOk());
  }
}

// A forged vector length fails before it is allocated: the archive's own size bounds what
// loading it may allocate (found by fuzzing: a small file claiming petabytes of words).
TEST(Persist, ForgedLengthsFailBeforeAllocating) {
  const EncodedTensor e = sample();
  std::stringstream full;
  ASSERT_TRUE(saveEncoded(e, full, ArchiveKind::kBinary).isOk());
  std::string bytes = full.str();
  // The words' length: an 8-byte count just before the words' bytes at the end.
  const uint64_t words = e.words.size();
  const size_t tail = 8 * words;
  size_t at = std::string::npos;
  for (size_t i = bytes.size() - tail - 8; i + 8 <= bytes.size() && i + 32 >= bytes.size() - tail;
       --i) {
    uint64_t v = 0;
    std::memcpy(&v, bytes.data() + i, 8);
    if (v == words) {
      at = i;
      break;
    }
  }
  ASSERT_NE(at, std::string::npos);
  for (const uint64_t forged : {uint64_t{1} << 30, uint64_t{1} << 50}) {
    std::memcpy(bytes.data() + at, &forged, 8);
    std::stringstream in(bytes);
    const Result<EncodedTensor> r = loadEncoded(in, ArchiveKind::kBinary);
    ASSERT_FALSE(r.isOk());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(r.status().message().find("more than its size can hold"), std::string::npos)
        << r.status().message();
  }
  // The text form of the same.
  std::stringstream text;
  ASSERT_TRUE(saveEncoded(e, text, ArchiveKind::kText).isOk());
  std::string t = text.str();
  const std::string count = " " + std::to_string(words) + " ";
  const size_t pos = t.rfind(count, t.size() - 2 * words);
  ASSERT_NE(pos, std::string::npos);
  t.replace(pos, count.size(), " 1000000000000 ");
  std::stringstream tin(t);
  const Result<EncodedTensor> r = loadEncoded(tin, ArchiveKind::kText);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("more than its size can hold"), std::string::npos)
      << r.status().message();
}

// The format of a .qc archive is that of plain std::vector fields (as written before archives
// were loaded within a budget): files written by either read with the other.
struct PlainArchived {
  int bits = 0, layout = 0, norm = 0, dtype = 0;
  int64_t bucketSize = 0, count = 0;
  std::vector<int64_t> shape;
  uint32_t flags = 0;
  std::vector<uint64_t> scaleBits, words;
  template <class Archive>
  void serialize(Archive& ar, const unsigned int /*version*/) {
    ar& bits& layout& norm& dtype& bucketSize& count& shape& flags& scaleBits& words;
  }
};

TEST(Persist, ArchivesHaveTheFormatOfPlainVectors) {
  const EncodedTensor e = sample();
  PlainArchived plain;
  plain.bits = e.bits;
  plain.layout = static_cast<int>(e.layout);
  plain.norm = static_cast<int>(e.norm);
  plain.dtype = static_cast<int>(e.dtype);
  plain.bucketSize = e.bucketSize;
  plain.count = e.count;
  plain.shape = e.shape;
  plain.flags = e.flags;
  for (double x : e.scales) plain.scaleBits.push_back(std::bit_cast<uint64_t>(x));
  plain.words = e.words;
  for (ArchiveKind kind : {ArchiveKind::kBinary, ArchiveKind::kText}) {
    std::stringstream expected;
    if (kind == ArchiveKind::kBinary) {
      boost::archive::binary_oarchive archive(expected);
      archive << plain;
    } else {
      boost::archive::text_oarchive archive(expected);
      archive << plain;
    }
    std::stringstream written;
    ASSERT_TRUE(saveEncoded(e, written, kind).isOk());
    EXPECT_EQ(written.str(), expected.str()) << "archive kind " << static_cast<int>(kind);
    Result<EncodedTensor> back = loadEncoded(expected, kind);
    ASSERT_TRUE(back.isOk()) << back.status().toString();
    EXPECT_TRUE(sameTensor(*back, e));
  }
}

TEST(Persist, InconsistentArchivedTensorIsRejected) {
  EncodedTensor e = sample();
  std::stringstream stream;
  ASSERT_TRUE(saveEncoded(e, stream, ArchiveKind::kText).isOk());
  // Edit the text archive: bits 5 -> 6 changes the expected word count.
  std::string text = stream.str();
  const size_t at = text.find(" 5 0 0 0 100 ");  // bits layout norm dtype bucket
  ASSERT_NE(at, std::string::npos) << text.substr(0, 80);
  text[at + 1] = '6';
  std::stringstream edited(text);
  Result<EncodedTensor> r = loadEncoded(edited, ArchiveKind::kText);
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("loading encoded tensor: expected"), std::string::npos)
      << r.status().message();
  // Saving an inconsistent tensor is refused too.
  e.words.clear();
  std::stringstream out;
  EXPECT_EQ(saveEncoded(e, out, ArchiveKind::kBinary).code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace qcomm
