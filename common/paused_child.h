// A child process to read another process's state from (crpipe check, tests): it runs
// `setup`, tells the parent it is done, and waits; it is killed and reaped when the
// PausedChild goes away, also when a test fails. `setup` runs in the child: it may exit
// with _exit(1) on error, which ready() then reports.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

#include "common/unique_fd.h"

namespace crpipe {

class PausedChild {
 public:
  explicit PausedChild(const std::function<void()>& setup = [] {}) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) {
      return;
    }
    UniqueFd readEnd(ends[0]), writeEnd(ends[1]);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphan if the parent dies first
      readEnd.reset();
      try {
        setup();
      } catch (...) {
        _exit(1);
      }
      char c = 1;
      (void)!::write(writeEnd.get(), &c, 1);
      for (;;) {
        ::pause();
      }
    }
    writeEnd.reset();  // a child that exits early then reads as EOF
    char c = 0;
    ssize_t n = 0;
    if (pid_ > 0) {
      do {
        n = ::read(readEnd.get(), &c, 1);
      } while (n < 0 && errno == EINTR);
    }
    ready_ = n == 1;
  }
  ~PausedChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  PausedChild(const PausedChild&) = delete;
  PausedChild& operator=(const PausedChild&) = delete;

  pid_t pid() const { return pid_; }
  // The child ran its setup and waits.
  bool ready() const { return ready_; }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace crpipe
