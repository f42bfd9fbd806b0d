#pragma once

#include <sys/types.h>

#include <array>
#include <vector>

#include "common/result.h"
#include "protos/inventory.pb.h"

namespace crpipe::collector::task {

// TaskKobjIdsEntry of each process: the kernel objects a process may share with others
// (mm, fd table, fs struct, signal handlers) get one id per object, found with kcmp(2)
// against one member of each object seen so far. Namespaces are named by the inode of
// /proc/PID/ns/KIND, which is the namespace's identity (it fits CRIU's 32-bit fields).
class KobjIds {
 public:
  Result<images::TaskKobjIdsEntry> idsFor(pid_t pid);

 private:
  struct Object {
    pid_t member;
    uint32_t id;
  };
  Result<uint32_t> idOf(int kind, pid_t pid);

  std::array<std::vector<Object>, 4> seen_;  // vm, files, fs, sighand
  std::array<uint32_t, 4> next_{1, 1, 1, 1};
};

}  // namespace crpipe::collector::task
