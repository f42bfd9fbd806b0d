#include "collector/mount_ns.h"

#include <string>

#include "common/namespaces.h"

namespace crpipe::collector {

Result<std::optional<uint64_t>> MountNamespaces::namespaceOf(int mntId,
                                                             const std::set<pid_t>& pids) {
  if (!ownRead_) {
    auto ids = mountIdsIn("/proc/self/mountinfo");
    if (!ids) {
      return fail(std::move(ids).error());
    }
    own_ = std::move(*ids);
    ownRead_ = true;
  }
  if (own_.contains(mntId)) {
    return std::optional<uint64_t>(0);
  }
  for (const auto& [ino, ids] : tree_) {
    if (ids.contains(mntId)) {
      return std::optional<uint64_t>(ino);
    }
  }
  for (pid_t pid : pids) {
    if (!looked_.insert(pid).second) {
      continue;
    }
    const std::string proc = "/proc/" + std::to_string(pid);
    auto ino = namespaceInode(proc + "/ns/mnt");
    if (!ino) {
      return fail(std::move(ino).error().context("pid " + std::to_string(pid)));
    }
    if (tree_.contains(*ino)) {
      continue;
    }
    auto ids = mountIdsIn(proc + "/mountinfo");
    if (!ids) {
      return fail(std::move(ids).error().context("pid " + std::to_string(pid)));
    }
    const bool here = ids->contains(mntId);
    tree_.emplace(*ino, std::move(*ids));
    if (here) {
      return std::optional<uint64_t>(*ino);
    }
  }
  return std::optional<uint64_t>();
}

}  // namespace crpipe::collector
