#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace crpipe {

// Progress of a long dump on stderr: one line rewritten in place when stderr is a
// terminal, otherwise plain lines (at most one a second per step, so logs stay short).
class ProgressView {
 public:
  explicit ProgressView(FILE* out);
  ~ProgressView() { clear(); }
  ProgressView(const ProgressView&) = delete;
  ProgressView& operator=(const ProgressView&) = delete;

  void update(const std::string& stage, const std::string& step, uint64_t done, uint64_t total,
              const std::string& detail);
  // A whole line of its own (warnings, the final summary); clears the status line first.
  void line(const std::string& text);
  // Removes the status line.
  void clear();

 private:
  FILE* out_;
  bool tty_;
  bool statusShown_ = false;
  std::string lastKey_;
  uint64_t lastPlainMs_ = 0;
};

}  // namespace crpipe
