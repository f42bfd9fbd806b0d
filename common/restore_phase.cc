#include "common/restore_phase.h"

namespace crpipe {

const char* phaseName(RestorePhase p) {
  switch (p) {
    case RestorePhase::FORK_TREE:
      return "fork-tree";
    case RestorePhase::GROUP_LEADERS:
      return "group-leaders";
    case RestorePhase::GROUP_MEMBERS:
      return "group-members";
    case RestorePhase::BIND_LISTEN:
      return "bind-listen";
    case RestorePhase::CONNECT:
      return "connect";
    case RestorePhase::ACCEPT:
      return "accept";
    case RestorePhase::PENDING_CONNECT:
      return "pending-connect";
    case RestorePhase::REFILL_QUEUES:
      return "refill-queues";
    case RestorePhase::OPEN_FILES:
      return "open-files";
    case RestorePhase::SHARE_FDS:
      return "share-fds";
    case RestorePhase::MEMORY:
      return "memory";
    case RestorePhase::RESUME:
      return "resume";
  }
  return "unknown-phase";
}

std::optional<RestorePhase> nextPhase(RestorePhase p) {
  for (size_t i = 0; i + 1 < kRestorePhases.size(); ++i) {
    if (kRestorePhases[i] == p) {
      return kRestorePhases[i + 1];
    }
  }
  return std::nullopt;
}

}  // namespace crpipe
