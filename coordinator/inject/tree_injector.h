#pragma once

#include <sched.h>

#include <map>
#include <memory>
#include <vector>

#include "common/log.h"
#include "common/result.h"
#include "coordinator/inject/injected_task.h"
#include "coordinator/inject/task_images.h"
#include "coordinator/restore_images.h"
#include "coordinator/restore_plan.h"

namespace crpipe::inject {

// The memory and resume phases of a restore, run by the coordinator itself: it holds the
// images (pages included) already, so it writes pages straight from them into each task,
// and it is the one process every restorer trusts. Each restorer, blocked on its channel
// after PhaseDone{memory}, is seized (PTRACE_SEIZE + PTRACE_INTERRUPT) and turned into its
// task by syscall injection; every task stays stopped until resume() gives all threads
// their registers and detaches them one right after the other.
class TreeInjector {
 public:
  TreeInjector(const RestoreImages& images, const RestorePlan& plan, Log& log);
  ~TreeInjector();
  TreeInjector(const TreeInjector&) = delete;
  TreeInjector& operator=(const TreeInjector&) = delete;

  // Parses every task's process state images; refuses, before anything is created, a dump
  // without them or with something this build cannot restore.
  Status load();
  // The memory phase: every task seized and made, threads included, left stopped.
  Status restoreMemory();
  // The resume phase: registers, then every thread of every task detached.
  Status resume();

  uint64_t bytesFilled() const { return bytesFilled_; }
  uint64_t threadCount() const;

 private:
  Status createShmemObjects();
  struct FillJob;
  // Seizes the restorer and maps its address space (no pages yet).
  Status prepareTask(InjectedTask& t);
  // Starts writing the task's pages on a thread of their own (split: on two).
  std::unique_ptr<FillJob> startFill(InjectedTask& t, bool split);
  // Waits for those pages, then everything else: protections, process state, threads.
  Status completeTask(FillJob& job);
  Status seize(pid_t pid);
  Status createThreads(InjectedTask& t);
  void dropShmemObjects();
  void pinCoordinator();
  void unpinCoordinator();

  const RestoreImages& images_;
  const RestorePlan& plan_;
  Log& log_;
  std::vector<TaskImage> taskImages_;
  std::map<uint64_t, PageRuns> shmemImages_;
  std::map<uint64_t, ShmemObject> shmem_;
  std::vector<std::unique_ptr<InjectedTask>> tasks_;
  std::vector<pid_t> seized_;
  uint64_t bytesFilled_ = 0;
  uint64_t fillWaitNs_ = 0;  // time the coordinator waited for page fills (debug log)
  // While injecting, the coordinator and the task it drives share one CPU: every injected
  // syscall is two ptrace stops, and a stop that wakes a tracer idling on another CPU costs
  // an IPI and a halt exit (tens of us in a VM), a same-CPU switch a few us.
  bool pinned_ = false;
  int cpu_ = -1;
  cpu_set_t coordinatorMask_{};
};

}  // namespace crpipe::inject
