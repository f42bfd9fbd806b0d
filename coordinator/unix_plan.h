#pragma once

#include <sys/types.h>

#include <map>

#include "common/result.h"
#include "coordinator/restore_images.h"
#include "coordinator/restore_plan.h"

namespace crpipe {

// Plans the unix sockets of a restore (issue 5): which task creates each socket and how
// (UnixRole), which task writes each socket's queue back, and which entries each of those
// tasks needs. `creator` gets the creating task of every unix socket an fd holds; the
// generic planner then hands each to its other holders in shareFds.
//
// Sockets that meet during the restore — peers, sockets sharing a name (a listener and the
// connections it accepted), a listener and its pending connections, a datagram receiver
// and the senders of its queued messages — form one group, made by one task, so that
// what must happen in order (accept order, the order of queued datagrams from several
// senders, connect before unlink) happens in one process. The exceptions are SO_PEERCRED:
// the client of a connection is made by the task whose pid its peer reports, so that the
// kernel records the right pid.
Status planUnixSockets(const RestoreImages& images, const PlanOptions& opts, RestorePlan& plan,
                       std::map<uint32_t, pid_t>& creator);

}  // namespace crpipe
