#pragma once

#include <sys/types.h>

#include <vector>

#include "common/log.h"
#include "common/result.h"

namespace crpipe {

// Refuses pids that a running process holds, naming it. A pid held by a zombie (the
// dumped tree, killed by the dump, not yet reaped by its new parent) is waited for, at
// most `timeoutMs` in all, with a message: poll() on its pidfd reports POLLHUP once it is
// reaped (Linux 6.9+; on older kernels the wait runs into the timeout). Nothing sleeps.
Status waitPidsFree(const std::vector<pid_t>& pids, int timeoutMs, Log& log);

}  // namespace crpipe
