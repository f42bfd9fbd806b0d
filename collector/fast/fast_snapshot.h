#pragma once

#include <sys/types.h>

#include <deque>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "collector/fast/fast_records.h"
#include "common/log.h"
#include "common/result.h"

namespace crpipe::collector {

// The collector's fast path: what two BPF iterators (fast_bpf.bpf.c) read in one pass per
// process and per network namespace, for the fd table and the fd kinds to consult before
// they fall back to syscalls. It answers for every fd of the frozen tree (number, CLOEXEC,
// flags, position, inode, mount id, owner, open-file-description id) and, for the unix
// sockets they hold, every SOL_SOCKET option crpipe records and, mostly, the receive queue.
//
// take() needs Linux >= 5.19 with BTF, CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN), and a
// collector in the initial user namespace; otherwise it returns an Error starting with
// "BPF unavailable:" and the collector uses the syscall path for everything. Queues with
// data in page fragments need CAP_SYS_ADMIN too (see unix_embryo_probe.h); without it those
// sockets alone are peeked with syscalls.
class FastSnapshot {
 public:
  static Result<std::unique_ptr<FastSnapshot>> take(const std::set<pid_t>& pids, Log& log);

  // The fds of a process of the tree, in fd order; nullptr if it was not read.
  const std::vector<FastFd>* fdsOf(pid_t pid) const;
  // A unix socket some task of the tree holds; nullptr if the iterator did not see it.
  const FastUnix* unixSocket(uint32_t ino) const;

  size_t socketCount() const { return unix_.size(); }

 private:
  std::deque<std::string> buffers_;  // iterator output; FastSkb views point into it
  std::unordered_map<pid_t, std::vector<FastFd>> fds_;
  std::unordered_map<uint32_t, FastUnix> unix_;
};

}  // namespace crpipe::collector
