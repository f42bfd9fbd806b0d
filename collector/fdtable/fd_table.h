#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/proc.h"
#include "common/result.h"

namespace crpipe::collector {

// A frozen process's fd table read by a BPF iterator (fd_table.bpf.c): every fd with what
// /proc/PID/fdinfo/N says (flags with O_CLOEXEC, position, mount id, inode) and its mode,
// in one pass, where /proc makes and frees a dentry and an inode for each fd it lists and
// for each fdinfo file opened (a third of the collector's CPU at 10,000 sockets). Loading
// costs ~10 ms (libbpf reads the kernel's BTF), so the collector asks it only for a task
// with a large fd table, and falls back to /proc where it cannot load (no BTF, Linux <
// 6.1, which has no pid filter for task iterators, no CAP_BPF + CAP_PERFMON).
class FdTableReader {
 public:
  struct Fd {
    int fd = -1;
    FdInfo info;
    uint32_t mode = 0;
    dev_t dev = 0;  // the super block's device: what stat(2) reports for a socket
  };

  static Result<std::unique_ptr<FdTableReader>> load();
  ~FdTableReader();
  FdTableReader(const FdTableReader&) = delete;
  FdTableReader& operator=(const FdTableReader&) = delete;

  // Every fd of process `pid` (`pidfd` refers to it), in fd order; an error if the
  // process is gone.
  Result<std::vector<Fd>> read(pid_t pid, int pidfd) const;

 private:
  struct Impl;
  explicit FdTableReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crpipe::collector
