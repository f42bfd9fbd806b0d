#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe {

// Mount ids listed in a mountinfo file (/proc/self/mountinfo, /proc/PID/mountinfo).
Result<std::set<int>> mountIdsIn(const std::string& mountinfoPath);

// Inode of a namespace file (/proc/PID/ns/mnt, /proc/self/ns/net ...).
Result<uint64_t> namespaceInode(const std::string& nsPath);

// A namespace of this kind ("net", "mnt") and inode that still exists, opened so that it
// cannot go away: for "net" the named ones in /run/netns first, then every process's
// /proc/PID/ns/KIND. Invalid when none is found.
UniqueFd openNamespaceByInode(const char* kind, uint64_t ino);

}  // namespace crpipe
