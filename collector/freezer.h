#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/result.h"

namespace crpipe::collector {

struct FrozenProcess {
  pid_t pid = 0;
  pid_t ppid = 0;              // parent inside the tree; 0 for the root
  std::vector<pid_t> threads;  // the leader first
  // Signals a thread had already taken from its queue for delivery when the freeze
  // stopped it (signal-delivery-stop): tid -> their siginfos (128 bytes each), in order.
  // They belong at the head of that thread's pending queue in the images, and are queued
  // again when the tree is released.
  std::map<pid_t, std::vector<std::string>> caught;
};

// Holds every thread of a process tree in ptrace-stop. Built by freeze(); the destructor
// releases every thread running, as it was, unless kill() was called. A collector that
// fails anywhere therefore leaves the tree untouched just by unwinding.
class FrozenTree {
 public:
  // Seizes and interrupts every thread of `root` and its descendants, repeating until a
  // pass finds no new task: a thread or child created while freezing is caught, because a
  // process's children are read only after all its threads stopped.
  static Result<FrozenTree> freeze(pid_t root, Log& log);

  FrozenTree(FrozenTree&&) noexcept;
  FrozenTree& operator=(FrozenTree&&) = delete;
  FrozenTree(const FrozenTree&) = delete;
  ~FrozenTree();

  // Processes in tree order, parents before children.
  const std::vector<FrozenProcess>& processes() const { return procs_; }
  size_t threadCount() const { return stopped_.size(); }

  // SIGKILLs every process of the tree (after a successful dump), then detaches.
  void kill();
  // Detaches every thread, queueing again the signals that arrived while seizing.
  void release();

 private:
  explicit FrozenTree(Log& log) : log_(&log) {}
  // false: the thread exited before it could be stopped.
  Result<bool> seizeThread(pid_t tid, FrozenProcess& p);
  Status freezeProcess(FrozenProcess& p, bool& gone);

  Log* log_;
  std::vector<FrozenProcess> procs_;
  // Every stopped thread -> its process.
  std::map<pid_t, pid_t> stopped_;
  // Signals caught while seizing, by tid (also copied into each FrozenProcess); kept here
  // so that a freeze that fails halfway queues them again too.
  std::map<pid_t, std::vector<std::string>> caught_;
  bool done_ = false;
  // When the first thread stopped; the log says how long the tree stayed frozen.
  std::chrono::steady_clock::time_point frozenSince_ = std::chrono::steady_clock::now();
};

}  // namespace crpipe::collector
