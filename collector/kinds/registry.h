#pragma once

#include <memory>
#include <vector>

#include "collector/kinds/fd_kind.h"

namespace crpipe::collector {

// The fd kinds of the dump side, in matching order (first match wins). One line per kind.
std::vector<std::unique_ptr<FdKind>> makeFdKinds();

}  // namespace crpipe::collector
