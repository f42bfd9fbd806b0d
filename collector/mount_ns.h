#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>

#include "common/result.h"

namespace crpipe::collector {

// Which mount namespace a mount (by its system-wide mount id) belongs to: the collector's
// own, or one that a task of the dumped tree lives in. Each namespace's mountinfo is read
// once, and only when a mount is not in the collector's own.
class MountNamespaces {
 public:
  // 0: the collector's own namespace. Otherwise the inode of the tree's namespace that
  // holds the mount; nullopt when no namespace seen holds it.
  Result<std::optional<uint64_t>> namespaceOf(int mntId, const std::set<pid_t>& pids);

 private:
  bool ownRead_ = false;
  std::set<int> own_;
  std::map<uint64_t, std::set<int>> tree_;  // namespace inode -> its mount ids
  std::set<pid_t> looked_;                  // tasks whose namespace is in tree_
};

}  // namespace crpipe::collector
