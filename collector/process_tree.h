#pragma once

#include <vector>

#include "collector/freezer.h"
#include "common/result.h"
#include "protos/pstree.pb.h"

namespace crpipe::collector {

// pstree.img entries of a frozen tree, parents first; the root's ppid is 0 as in CRIU.
Result<std::vector<images::PstreeEntry>> describeTree(const FrozenTree& tree);

}  // namespace crpipe::collector
