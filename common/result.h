#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>

namespace crpipe {

// An error with the errno of the syscall that failed (0 if none) and a message that
// gains context on its way up: "pid 300 fd 5: unix socket ino 4711: getsockopt: ...".
class Error {
 public:
  Error() = default;
  Error(int err, std::string msg) : errno_(err), msg_(std::move(msg)) {}

  // Captures errno at the call site; call it on the line of the syscall.
  static Error sys(std::string what) { return Error(errno, std::move(what)); }
  static Error sys(int err, std::string what) { return Error(err, std::move(what)); }
  static Error plain(std::string what) { return Error(0, std::move(what)); }

  int err() const { return errno_; }
  const std::string& message() const { return msg_; }

  // "context: message"
  Error context(const std::string& ctx) && {
    msg_ = ctx + ": " + msg_;
    return std::move(*this);
  }

  std::string str() const {
    if (errno_ == 0) {
      return msg_;
    }
    return msg_ + ": " + std::strerror(errno_);
  }

 private:
  int errno_ = 0;
  std::string msg_;
};

template <typename T>
using Result = std::expected<T, Error>;

using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Error e) { return std::unexpected<Error>(std::move(e)); }
inline std::unexpected<Error> failSys(std::string what) {
  return std::unexpected<Error>(Error::sys(std::move(what)));
}
inline std::unexpected<Error> failMsg(std::string what) {
  return std::unexpected<Error>(Error::plain(std::move(what)));
}

}  // namespace crpipe

// Evaluates a Result/Status expression; on error returns it from the enclosing function.
#define CRPIPE_TRY(expr)                                \
  do {                                                  \
    auto&& crpipe_try_r_ = (expr);                      \
    if (!crpipe_try_r_) {                               \
      return ::crpipe::fail(std::move(crpipe_try_r_).error()); \
    }                                                   \
  } while (0)

// Like CRPIPE_TRY, adding context to the error.
#define CRPIPE_TRY_CTX(expr, ctx)                                        \
  do {                                                                   \
    auto&& crpipe_try_r_ = (expr);                                       \
    if (!crpipe_try_r_) {                                                \
      return ::crpipe::fail(std::move(crpipe_try_r_).error().context(ctx)); \
    }                                                                    \
  } while (0)
