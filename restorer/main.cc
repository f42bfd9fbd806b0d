// crpipe-restorer: one per restored task. The coordinator starts the root's restorer
// (clone3 with the root's pid, then exec); every restorer creates its children itself with
// their original pids. Each then carries out the phases the coordinator orders on its
// control channel (protos/stage.capnp: TaskOrder, Phase, PhaseDone) and stops, blocked on
// that channel, before memory and registers (issue 4).
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/fd_limit.h"
#include "restorer/task.h"

namespace {

constexpr const char* kUsage =
    "usage: crpipe-restorer --control-fd N --log-fd N [-v N]\n"
    "  Started by `crpipe run restore`; not meant to be run by hand.\n";

bool parseInt(const char* s, int* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (s == nullptr || end == s || *end != '\0' || v < 0 || v > (1 << 24)) {
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  int controlFd = -1;
  int logFd = -1;
  int verbosity = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    int* dst = a == "--control-fd" ? &controlFd : a == "--log-fd" ? &logFd
               : a == "-v"         ? &verbosity
                                   : nullptr;
    if (dst == nullptr || v == nullptr || !parseInt(v, dst)) {
      std::fprintf(stderr, "crpipe-restorer: bad argument %s\n%s", a.c_str(), kUsage);
      return 2;
    }
    ++i;
  }
  if (controlFd < 0 || logFd < 0) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  // A coordinator that went away shows up as a write error, not as our death.
  signal(SIGPIPE, SIG_IGN);
  // The service fds live above every fd number of the restored tree.
  crpipe::raiseFdLimit();
  FILE* log = fdopen(logFd, "a");
  if (log == nullptr) {
    std::fprintf(stderr, "crpipe-restorer: log fd %d: %s\n", logFd, std::strerror(errno));
    return 2;
  }
  crpipe::restorer::TaskStart start;
  start.control = crpipe::UniqueFd(controlFd);
  start.logSink = log;
  start.verbosity = verbosity;
  crpipe::restorer::Task task(std::move(start));
  return task.run();
}
