#pragma once

#include <vector>

#include "common/proc.h"
#include "common/sockopt_reader.h"

namespace crpipe::collector {

// What a thread that reads fds ahead (FdKind::readAhead) keeps from one fd to the next.
// Each such thread has its own.
struct ReadAheadContext {
  SockoptReader sockopts;  // an io_uring ring for socket options, where the kernel has one
  std::vector<char> peekScratch;  // the buffer of queue peeks, reused
  // The collector runs in the initial user namespace, where the kernel's uids and gids
  // are the ones user space sees.
  bool initialUserNs = inInitialUserNs();
};

}  // namespace crpipe::collector
