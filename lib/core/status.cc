#include "qcomm/status.h"

namespace qcomm {

std::string_view statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "OK";
    case StatusCode::kInvalidArgument:
      return "InvalidArgument";
    case StatusCode::kOutOfRange:
      return "OutOfRange";
    case StatusCode::kDataLoss:
      return "DataLoss";
    case StatusCode::kFailedPrecondition:
      return "FailedPrecondition";
    case StatusCode::kUnimplemented:
      return "Unimplemented";
    case StatusCode::kInternal:
      return "Internal";
    case StatusCode::kIoError:
      return "IoError";
    case StatusCode::kDeadlineExceeded:
      return "DeadlineExceeded";
  }
  return "Unknown";
}

std::string Status::toString() const {
  if (isOk()) return "OK";
  return strCat(statusCodeName(code_), ": ", message_);
}

Status Status::withContext(std::string_view context) const {
  if (isOk()) return *this;
  return Status(code_, strCat(context, message_));
}

}  // namespace qcomm
