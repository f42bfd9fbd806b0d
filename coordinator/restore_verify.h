#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "coordinator/restore_plan.h"

namespace crpipe {

// --check-only: what /proc says about the restored tree, compared with the plan (and so
// with the images). `report` is JSON of what was observed, for tests and humans:
//   {"tasks": [{"pid", "ppid", "pgid", "sid", "fds": [{"fd", "link", "pos", "flags",
//     "cloexec", "data"?: hex of buffered pipe data}]}], "problems": [...]}
struct TreeCheck {
  std::vector<std::string> problems;
  std::string report;
};

// `serviceFds`: per pid, the restorer's own fds that may be open besides the task's.
TreeCheck checkRestoredTree(const RestorePlan& plan,
                            const std::map<pid_t, std::vector<int>>& serviceFds);

}  // namespace crpipe
