#pragma once

#include <uv.h>

#include <string>

#include "common/result.h"

namespace crpipe {

// Owns a libuv loop. Handles close themselves (their memory is freed in their close
// callbacks); the destructor runs the loop once more so those callbacks happen, and
// then closes the loop, which must succeed: a handle still open here is a bug.
class UvLoop {
 public:
  UvLoop();
  ~UvLoop();
  UvLoop(const UvLoop&) = delete;
  UvLoop& operator=(const UvLoop&) = delete;

  uv_loop_t* get() { return &loop_; }
  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }

 private:
  uv_loop_t loop_{};
};

// A libuv error code as an Error ("what: message").
inline Error uvError(int code, const std::string& what) {
  return Error(code < 0 ? -code : code, what);
}

}  // namespace crpipe
