#pragma once

#include <sys/types.h>

#include <map>
#include <vector>

#include "common/log.h"
#include "common/result.h"

namespace crpipe {

// Refuses pids that a running process holds, naming it. A pid held by a zombie (the
// dumped tree, killed by the dump, not yet reaped by its new parent) is waited for, at
// most `timeoutMs` in all, with a message: poll() on its pidfd reports POLLHUP once it is
// reaped (Linux 6.9+; on older kernels the wait runs into the timeout). Nothing sleeps.
// `threadOf` names, for each tid of a dumped thread among `pids`, its process: a taken tid
// is refused as "tid T (a thread of pid P)", whoever holds it (a process or a thread).
Status waitPidsFree(const std::vector<pid_t>& pids, int timeoutMs, Log& log,
                    const std::map<pid_t, pid_t>& threadOf = {});

}  // namespace crpipe
