#pragma once

#include <array>
#include <optional>
#include <string_view>

#include "protos/stage.capnp.h"

namespace crpipe {

using RestorePhase = proto::RestorePhase;

// Every restore phase in the order the coordinator drives them (protos/stage.capnp).
inline constexpr std::array<RestorePhase, 11> kRestorePhases = {
    RestorePhase::FORK_TREE,     RestorePhase::GROUP_LEADERS, RestorePhase::GROUP_MEMBERS,
    RestorePhase::BIND_LISTEN,   RestorePhase::CONNECT,       RestorePhase::ACCEPT,
    RestorePhase::REFILL_QUEUES, RestorePhase::OPEN_FILES,    RestorePhase::SHARE_FDS,
    RestorePhase::MEMORY,        RestorePhase::RESUME,
};

// "fork-tree", "open-files", ...: for logs, progress and error messages.
const char* phaseName(RestorePhase p);

// The phase after `p`, if any.
std::optional<RestorePhase> nextPhase(RestorePhase p);

}  // namespace crpipe
