#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe::restorer {

// Restorers hand open file descriptions to each other with SCM_RIGHTS over datagram
// sockets bound to abstract names, one per restored task: "crpipe-restore-TOKEN-PID".
// Every restorer creates its socket at birth (forkTree), so all exist before shareFds.
Result<UniqueFd> openTransport(const std::string& token, pid_t pid);

struct Outgoing {
  uint32_t fileId;
  int fd;
};

// Sends every outgoing description to its task and receives every expected one, at the
// same time: each restorer of the phase does both, so neither side may wait for the
// other to finish first. Waits only in poll() for its socket or a full peer queue.
// Received fds are CLOEXEC and land at or above fdBase; a message from a task that is not
// among the expected senders (SCM_CREDENTIALS) is refused.
Status exchangeFds(int transport, const std::string& token,
                   const std::map<pid_t, std::vector<Outgoing>>& sends,
                   const std::map<uint32_t, pid_t>& expected, int fdBase,
                   std::map<uint32_t, UniqueFd>& received);

}  // namespace crpipe::restorer
