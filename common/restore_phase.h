#pragma once

#include <array>
#include <optional>
#include <string_view>

#include "protos/stage.capnp.h"

namespace crpipe {

using RestorePhase = proto::RestorePhase;

// Every restore phase in the order the coordinator drives them (protos/stage.capnp). The
// capnp ordinals are not that order (pendingConnect came later): compare with phaseIndex.
inline constexpr std::array<RestorePhase, 12> kRestorePhases = {
    RestorePhase::FORK_TREE,       RestorePhase::GROUP_LEADERS, RestorePhase::GROUP_MEMBERS,
    RestorePhase::BIND_LISTEN,     RestorePhase::CONNECT,       RestorePhase::ACCEPT,
    RestorePhase::PENDING_CONNECT, RestorePhase::REFILL_QUEUES, RestorePhase::OPEN_FILES,
    RestorePhase::SHARE_FDS,       RestorePhase::MEMORY,        RestorePhase::RESUME,
};

// Where p comes in kRestorePhases (kRestorePhases.size() for an unknown value).
constexpr size_t phaseIndex(RestorePhase p) {
  for (size_t i = 0; i < kRestorePhases.size(); ++i) {
    if (kRestorePhases[i] == p) {
      return i;
    }
  }
  return kRestorePhases.size();
}

// "fork-tree", "open-files", ...: for logs, progress and error messages.
const char* phaseName(RestorePhase p);

// The phase after `p`, if any.
std::optional<RestorePhase> nextPhase(RestorePhase p);

}  // namespace crpipe
