#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "collector/task/task_proc.h"
#include "common/result.h"

namespace crpipe::collector::task {

// The kernel's struct sigaction of rt_sigaction(2) on x86_64.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

struct Itimer {
  uint64_t isec, iusec, vsec, vusec;
};

// What one thread holds, read from outside (ptrace, /proc, get_robust_list) and by
// syscall injection.
struct ThreadState {
  pid_t tid = 0;
  user_regs_struct regs{};    // as stopped (an interrupted syscall not yet rewound)
  user_fpregs_struct fp{};
  std::string xstate;         // NT_X86_XSTATE, empty without XSAVE
  uint64_t sigmask = 0;
  std::vector<std::string> pending;  // this thread's own pending siginfos (128 bytes each)
  uint64_t robustHead = 0;
  uint64_t robustLen = 0;
  uint64_t clearTidAddr = 0;
  uint64_t sasSp = 0, sasSize = 0;
  uint32_t sasFlags = 0;
  uint32_t pdeathSig = 0;
  uint32_t secbits = 0;
  int schedPolicy = 0, schedPrio = 0, nice = 0;
  std::string comm;
  TaskStatus status;
  uint64_t rseqAbi = 0;
  uint32_t rseqLen = 0, rseqSig = 0;
};

// What only the whole process has, read in its leader.
struct ProcessState {
  std::array<KernelSigaction, 64> sigactions{};  // index = signal - 1
  std::array<Itimer, 3> itimers{};               // ITIMER_REAL, _VIRTUAL, _PROF
  uint64_t brk = 0;
  int dumpable = 0;
  bool childSubreaper = false;
  bool thpDisabled = false;
  std::vector<std::string> sharedPending;  // process-wide pending siginfos
};

// Reads one thread of process `pid`; for the leader (tid == pid) also fills `proc`.
// `syscallInsn` comes from inject::findSyscallInsn().
Result<ThreadState> readThread(pid_t pid, pid_t tid, uint64_t syscallInsn, ProcessState* proc);

}  // namespace crpipe::collector::task
