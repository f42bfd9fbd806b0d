#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>

#include "collector/open_file.h"
#include "collector/options.h"
#include "common/image_stream.h"
#include "common/log.h"
#include "common/result.h"
#include "protos/fdinfo.pb.h"

namespace crpipe::collector {

class FileTable;
class FastSnapshot;

// Everything an fd kind may use while collecting. Owned by the dump, passed by reference;
// nothing here is global.
struct DumpContext {
  const DumpOptions& opts;
  Log& log;
  ImageEmitter& out;
  FileTable& files;
  // Pids of every process of the dumped tree (threads not included).
  const std::set<pid_t>& pids;
  // The BPF fast path's view of the tree; nullptr with --no-bpf or where BPF is unavailable.
  const FastSnapshot* fast = nullptr;

  bool inTree(pid_t pid) const { return pids.count(pid) != 0; }
};

// Fown of an open file description, read from the collector's duplicate.
Result<images::FownEntry> readFown(int fd);
// The same from what a BPF iterator read of f_owner (whether a pid is set, its pid type,
// the signal), or nothing when only the syscall can tell.
std::optional<images::FownEntry> fownFromOwner(bool pidSet, uint32_t pidType, uint32_t signum);
// The same from the fast path's record.
std::optional<images::FownEntry> fownFromFast(const FastFd& r);

}  // namespace crpipe::collector
