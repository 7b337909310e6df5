// Saving an encoded tensor to disk or a checkpoint through Boost.Serialization (binary or text
// archives). The hot path uses the wire message (wire.h) instead.
#pragma once

#include <iosfwd>

#include "qcomm/codec.h"
#include "qcomm/status.h"

namespace qcomm {

enum class ArchiveKind { kBinary, kText };

Status saveEncoded(const EncodedTensor& encoded, std::ostream& out, ArchiveKind kind);
// Errors (DataLoss) when the archive is malformed or describes an inconsistent tensor.
Result<EncodedTensor> loadEncoded(std::istream& in, ArchiveKind kind);

}  // namespace qcomm
