#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "collector/fast/fast_bpf_abi.h"

#include "common/proc.h"
#include "common/result.h"

namespace crpipe::collector {

// A frozen process's fd table read by a BPF iterator (fd_table.bpf.c): every fd with what
// /proc/PID/fdinfo/N says (flags with O_CLOEXEC, position, mount id, inode), its mode, its
// owner, whether it is its file's only reference, and for a unix socket the options
// getsockopt would give and its queue counted, in one pass, where /proc makes and frees a
// dentry and an inode for each fd it lists and for each fdinfo file opened (a third of
// the collector's CPU at 10,000 sockets). Loading costs ~5 ms (a light skeleton: the
// kernel relocates it), so the collector asks it only for a task with a large fd table,
// and falls back to /proc where it cannot load (no BTF, Linux < 6.1, which has no pid
// filter for task iterators, no CAP_BPF + CAP_PERFMON).
class FdTableReader {
 public:
  struct Fd {
    int fd = -1;
    FdInfo info;
    uint32_t mode = 0;
    dev_t dev = 0;  // the super block's device: what stat(2) reports for a socket
    // f_owner: whether a pid is set, its pid type and signal (fownFromOwner).
    bool ownerPid = false;
    uint32_t ownerPidType = 0, ownerSignum = 0;
    int family = -1;  // a socket's family, -1 for other files
    int state = -1;   // a socket's state (TCP_ESTABLISHED, TCP_LISTEN, ...)
    // The file's only reference is this fd (no other fd, task or queued message holds
    // it): a kind may read its state ahead on a grabbing thread without another thread
    // reading the same file at the same time.
    bool sole = false;
    // A unix socket's options as getsockopt reports them (kinds/unix_fast.h turns them
    // into the entry's), no queue.
    std::optional<crp_fast_usk> usk;
    // A unix socket's receive queue, counted: skbs and unread bytes (not for a listener,
    // nor where the count gave up).
    std::optional<uint32_t> queuedSkbs, queuedBytes;
    // When every queued skb came from one sender (these credentials; pid 0 if the
    // collector's namespace cannot see it) and none carries files.
    std::optional<ucred> queuedFrom;
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
