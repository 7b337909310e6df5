// Status and Result<T>: how every qcomm call reports failure. Nothing in the library throws across
// its API; messages name what was wrong (rank, tensor, field, expected and actual values).
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace qcomm {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // the caller passed something impossible
  kOutOfRange = 2,       // a size or index beyond what the format allows
  kDataLoss = 3,         // a message or file is malformed, truncated or corrupted
  kFailedPrecondition = 4,
  kUnimplemented = 5,
  kInternal = 6,
  kIoError = 7,
  kDeadlineExceeded = 8,  // an operation did not finish in time (and was aborted)
};

std::string_view statusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool isOk() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return isOk(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: bits must be in [1, 16], got 0".
  std::string toString() const;

  // Returns a copy whose message starts with `context`, e.g. "rank 2: ".
  Status withContext(std::string_view context) const;
  // The same with the context strCat(parts...), made only for an error: hot calls' success paths
  // build no string (eight of them took half of a 4096-value decode-and-mean of 8 codes).
  template <typename... Args>
  Status withContextOf(const Args&... parts) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Concatenates anything streamable into a string: strCat("expected ", 4, " got ", n).
template <typename... Args>
std::string strCat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

template <typename... Args>
Status Status::withContextOf(const Args&... parts) const {
  return isOk() ? *this : withContext(strCat(parts...));
}

template <typename... Args>
Status invalidArgument(const Args&... args) {
  return Status(StatusCode::kInvalidArgument, strCat(args...));
}
template <typename... Args>
Status outOfRange(const Args&... args) {
  return Status(StatusCode::kOutOfRange, strCat(args...));
}
template <typename... Args>
Status dataLoss(const Args&... args) {
  return Status(StatusCode::kDataLoss, strCat(args...));
}
template <typename... Args>
Status failedPrecondition(const Args&... args) {
  return Status(StatusCode::kFailedPrecondition, strCat(args...));
}
template <typename... Args>
Status ioError(const Args&... args) {
  return Status(StatusCode::kIoError, strCat(args...));
}
template <typename... Args>
Status deadlineExceeded(const Args&... args) {
  return Status(StatusCode::kDeadlineExceeded, strCat(args...));
}
template <typename... Args>
Status unimplemented(const Args&... args) {
  return Status(StatusCode::kUnimplemented, strCat(args...));
}
template <typename... Args>
Status internalError(const Args&... args) {
  return Status(StatusCode::kInternal, strCat(args...));
}

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : state_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(state_).isOk()) {
      state_ =
          Status(StatusCode::kInternal, "Result constructed from an OK Status without a value");
    }
  }

  bool isOk() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return isOk(); }
  Status status() const { return isOk() ? Status::ok() : std::get<Status>(state_); }

  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace qcomm

#define QCOMM_STATUS_CONCAT_INNER_(a, b) a##b
#define QCOMM_STATUS_CONCAT_(a, b) QCOMM_STATUS_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define QCOMM_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::qcomm::Status qcomm_status_ = (expr);          \
    if (!qcomm_status_.isOk()) return qcomm_status_; \
  } while (false)

// `QCOMM_ASSIGN_OR_RETURN(auto x, makeX());` binds the value or returns the error.
#define QCOMM_ASSIGN_OR_RETURN(lhs, expr)                          \
  auto QCOMM_STATUS_CONCAT_(qcomm_result_, __LINE__) = (expr);     \
  if (!QCOMM_STATUS_CONCAT_(qcomm_result_, __LINE__).isOk())       \
    return QCOMM_STATUS_CONCAT_(qcomm_result_, __LINE__).status(); \
  lhs = std::move(QCOMM_STATUS_CONCAT_(qcomm_result_, __LINE__)).value()
