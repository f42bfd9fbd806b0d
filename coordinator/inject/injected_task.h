#pragma once

#include <sched.h>
#include <sys/ptrace.h>
#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/ptrace/syscall_session.h"
#include "common/result.h"
#include "coordinator/inject/task_images.h"
#include "protos/regfile.pb.h"
#include "protos/fdinfo.pb.h"

// A restorer process that the coordinator seized to turn it into the dumped task by syscall
// injection (common/ptrace/), and what the steps of that share.
namespace crpipe::inject {

// The options every seized thread is traced with: new threads made by clone3 inside the
// task are caught stopped, and whatever crpipe dies of takes the half-restored tree along.
inline constexpr unsigned long kTraceOptions = PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;

// Layout of the page crpipe maps where the dumped task has nothing: a `syscall` instruction
// at its start, scratch memory for syscall arguments after it.
inline constexpr uint64_t kTrampolineSize = 64 * 1024;
inline constexpr uint64_t kScratchOffset = 4096;

// One shared anonymous object (a MAP_SHARED|MAP_ANONYMOUS region or a /dev/zero mapping),
// created once in the coordinator and filled there; every sharer maps it through
// /proc/COORDINATOR/map_files/START-END, so all of them share the same shmem inode.
struct ShmemObject {
  uint64_t addr = 0;  // in the coordinator
  uint64_t size = 0;
  std::string path;   // /proc/PID/map_files/... for the tasks to open
};

struct InjectedThread {
  pid_t tid = 0;
  const ThreadImage* image = nullptr;
  std::optional<SyscallSession> session;
};

struct InjectedTask {
  pid_t pid = 0;
  const TaskImage* image = nullptr;
  const std::map<uint32_t, images::FileEntry>* files = nullptr;
  const std::map<uint64_t, ShmemObject>* shmem = nullptr;
  int serviceFdBase = 0;
  Log* log = nullptr;
  uint64_t trampoline = 0;
  std::vector<InjectedThread> threads;  // [0] is the leader
  // The restorer's CPU affinity before the coordinator pinned it beside itself; every
  // thread gets it back before it runs.
  bool pinned = false;
  cpu_set_t affinity{};
  // The coordinator's own affinity while it is pinned beside the task (nullptr: not pinned);
  // the page copy, which needs no ptrace stop, runs with it, free to use any CPU.
  const cpu_set_t* coordinatorMask = nullptr;
  int cpu = -1;

  SyscallSession& leader() { return *threads[0].session; }
  uint64_t scratch() const { return trampoline + kScratchOffset; }
  std::string where() const { return "pid " + std::to_string(pid); }
  // Copies `len` bytes into the scratch area at `offset`; returns their address in the task.
  Result<uint64_t> put(uint64_t offset, const void* data, size_t len);
  Result<uint64_t> putString(uint64_t offset, const std::string& s);
  // The path of the REG entry `id` of files.img (a mapped file, the executable, cwd, root).
  Result<std::string> filePath(uint32_t id, const std::string& what) const;
};

// Address space (address_space.cc): trampoline, the restorer's memory gone, vdso/vvar
// moved, every VMA mapped (private ones writable) — then the pages are filled
// (page_fill.h), which needs no ptrace stop — then madvise and final protections.
Status mapTrampoline(InjectedTask& t, const std::vector<std::pair<uint64_t, uint64_t>>& current);
Status mapAddressSpace(InjectedTask& t);
Status finishAddressSpace(InjectedTask& t);

// Everything else of the process and its threads (task_state.cc), before the registers.
Status restoreProcessState(InjectedTask& t);
Status restoreThreadState(InjectedTask& t, InjectedThread& th);
Status restoreCredentials(InjectedTask& t, InjectedThread& th);
Status queuePendingSignals(InjectedTask& t);

// The registers of a thread as it must run: the general registers are left for end() to
// set; the FPU/SSE/AVX state is written once the session ended (restoreFpu).
void setFinalRegisters(InjectedThread& th);
Status restoreFpu(pid_t tid, const ThreadImage& image);

}  // namespace crpipe::inject
