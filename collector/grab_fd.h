#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "collector/fdtable/fd_table.h"
#include "collector/open_file.h"
#include "collector/read_ahead.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

// The /proc directories of one task that every fd needs, opened once.
struct TaskProcDirs {
  UniqueFd fd;      // /proc/PID/fd
  UniqueFd fdinfo;  // /proc/PID/fdinfo
};

Result<TaskProcDirs> openTaskProcDirs(pid_t pid);

// Takes the target's descriptor `fd` into the collector (pidfd_getfd), with what /proc
// says about it (fstat, the link text, fdinfo). `known`: what the fd-table iterator read,
// so the fdinfo file is not opened (nor fstat asked, for a socket: its mode, inode and
// device are all the dump uses of it).
Result<OpenFile> grabFd(int pidfd, const TaskProcDirs& dirs, pid_t pid, int fd,
                        const FdTableReader::Fd* known = nullptr);

// Grabs a task's fds on a second thread, ahead of the kinds that read them, and hands them
// out in order. pidfd_getfd, fstat and the fdinfo file are half of a socket's syscalls and
// depend on nothing the kinds do, so on a machine with a second core they overlap with the
// kinds' getsockopt and peeks. The thread is stopped and joined when this is destroyed,
// also when the caller stops early on an error; fds grabbed but never handed out are
// closed with it.
class FdPrefetcher {
 public:
  // `pidfd` and `dirs` are borrowed and must outlive this. `ahead` runs on each grabbed
  // file on the thread (FileTable::readAhead), so that the kinds' own syscalls on it are
  // shared between the two cores too.
  using Ahead = std::function<void(OpenFile&, ReadAheadContext&)>;
  // `known`: empty, or what FdTableReader read of each fd, in the same order.
  FdPrefetcher(int pidfd, const TaskProcDirs& dirs, pid_t pid, std::vector<int> fds,
               Ahead ahead = {}, std::vector<FdTableReader::Fd> known = {});
  FdPrefetcher(const FdPrefetcher&) = delete;
  FdPrefetcher& operator=(const FdPrefetcher&) = delete;

  size_t size() const { return fds_.size(); }
  // The i-th fd, grabbed; i goes 0, 1, 2, ... (each is taken once).
  Result<OpenFile> take(size_t i);

 private:
  void run(std::stop_token stop);
  // Grabs fds_[i] into slots_[i] and reads ahead with the calling thread's context
  // (made on first use: a ring costs a few syscalls).
  void fill(size_t i, std::unique_ptr<ReadAheadContext>& ctx);

  std::vector<int> fds_;
  std::vector<FdTableReader::Fd> known_;
  Ahead ahead_;
  int pidfd_;
  const TaskProcDirs* dirs_;
  pid_t pid_;
  std::vector<std::optional<Result<OpenFile>>> slots_;
  // Each index is filled by whoever claims it first (next_ counts the claims, in order):
  // the thread, or take() while it waits for an earlier one. done_[i]: slot i is filled.
  std::atomic<size_t> next_{0};
  std::unique_ptr<std::atomic<bool>[]> done_;
  std::unique_ptr<ReadAheadContext> workerCtx_, takerCtx_;
  std::jthread worker_;  // last: started once the rest exists, joined first
};

}  // namespace crpipe::collector
