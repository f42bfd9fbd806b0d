#pragma once

#include <memory>
#include <vector>

#include "restorer/kinds/restore_kind.h"

namespace crpipe::restorer {

// The fd kinds of the restore side, one line each (the mirror of collector/kinds/).
std::vector<std::unique_ptr<RestoreKind>> makeRestoreKinds();

// The kind that restores files of `type`, or nullptr.
RestoreKind* findKind(const std::vector<std::unique_ptr<RestoreKind>>& kinds,
                      images::FdTypes type);

}  // namespace crpipe::restorer
