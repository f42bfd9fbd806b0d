#include "common/ptrace/syscall_session.h"

#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/ptrace/regs.h"
#include "common/vma.h"
#include "common/ptrace/remote_mem.h"

namespace crpipe::inject {

namespace {

std::string tidCtx(pid_t tid) { return "tid " + std::to_string(tid); }

enum class StopKind { SyscallEntry, SyscallExit, Event, Signal };

struct Stop {
  StopKind kind;
  int sig = 0;        // Signal: the signal; Event: WSTOPSIG
  long rval = 0;      // SyscallExit
  uint64_t nr = 0;    // SyscallEntry
};

// Waits for tid's next stop and says what it is. With PTRACE_O_TRACESYSGOOD a syscall stop
// shows as SIGTRAP | 0x80; PTRACE_GET_SYSCALL_INFO says entry or exit (it reports
// PTRACE_SYSCALL_INFO_NONE for every stop without TRACESYSGOOD).
// A fault of the borrowed `syscall` instruction, which would come back at every resume;
// SIGSYS: syscall user dispatch (or seccomp) turned the syscall into a signal.
bool faultAtInsn(int sig) {
  return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGSYS;
}

Result<Stop> waitNextStop(pid_t tid, const char* what) {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::sys(tidCtx(tid) + ": " + what + ": waitpid"));
    }
    break;
  }
  if (WIFEXITED(status) || WIFSIGNALED(status)) {
    return failMsg(tidCtx(tid) + ": " + what + ": the thread exited");
  }
  if (!WIFSTOPPED(status)) {
    return failMsg(tidCtx(tid) + ": " + what + ": unexpected wait status " +
                   std::to_string(status));
  }
  const int sig = WSTOPSIG(status);
  const int event = status >> 16;
  if (event != 0) {
    return Stop{StopKind::Event, sig};
  }
  if (sig == (SIGTRAP | 0x80)) {
    __ptrace_syscall_info info{};
    if (::ptrace(PTRACE_GET_SYSCALL_INFO, tid, reinterpret_cast<void*>(sizeof(info)), &info) <
        0) {
      return fail(Error::sys(tidCtx(tid) + ": " + what + ": PTRACE_GET_SYSCALL_INFO"));
    }
    if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
      return Stop{StopKind::SyscallEntry, 0, 0, info.entry.nr};
    }
    if (info.op == PTRACE_SYSCALL_INFO_EXIT) {
      return Stop{StopKind::SyscallExit, 0, static_cast<long>(info.exit.rval), 0};
    }
  }
  return Stop{StopKind::Signal, sig};
}

}  // namespace

Result<SyscallSession> SyscallSession::begin(pid_t tid, uint64_t syscallInsn,
                                             unsigned long tracerOptions) {
  return start(tid, syscallInsn, tracerOptions, false);
}

Result<SyscallSession> SyscallSession::beginStepping(pid_t tid, uint64_t syscallInsn,
                                                     unsigned long tracerOptions) {
  return start(tid, syscallInsn, tracerOptions, true);
}

Result<SyscallSession> SyscallSession::start(pid_t tid, uint64_t syscallInsn,
                                             unsigned long tracerOptions, bool stepping) {
  SyscallSession s(tid, syscallInsn);
  s.stepping_ = stepping;
  // PTRACE_SETOPTIONS replaces the whole set, so the caller's own options go along.
  if (::ptrace(PTRACE_SETOPTIONS, tid, nullptr,
               reinterpret_cast<void*>(tracerOptions | PTRACE_O_TRACESYSGOOD)) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_SETOPTIONS"));
  }
  auto regs = getRegs(tid);
  if (!regs) {
    return fail(std::move(regs).error());
  }
  s.saved_ = *regs;
  if (::ptrace(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof(uint64_t)),
               &s.savedMask_) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_GETSIGMASK"));
  }
  // The kernel never blocks SIGKILL and SIGSTOP, whatever the mask says. Stepping leaves
  // SIGTRAP open (beginStepping).
  uint64_t all = ~uint64_t{0};
  if (stepping) {
    all &= ~(uint64_t{1} << (SIGTRAP - 1));
  }
  if (::ptrace(PTRACE_SETSIGMASK, tid, reinterpret_cast<void*>(sizeof(uint64_t)), &all) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_SETSIGMASK"));
  }
  s.active_ = true;  // from here on end() owes the thread its mask
  __ptrace_rseq_configuration rseq{};
  long n = ::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, reinterpret_cast<void*>(sizeof(rseq)),
                    &rseq);
  if (n > 0 && rseq.rseq_abi_pointer != 0) {
    // struct rseq: u32 cpu_id_start, u32 cpu_id, u64 rseq_cs.
    s.rseqCsAddr_ = rseq.rseq_abi_pointer + 8;
    CRPIPE_TRY_CTX(readRemote(tid, s.rseqCsAddr_, &s.rseqCs_, sizeof(s.rseqCs_)),
                   tidCtx(tid) + ": read rseq_cs");
  }
  return s;
}

SyscallSession::SyscallSession(SyscallSession&& o) noexcept
    : tid_(o.tid_), insn_(o.insn_), stepping_(o.stepping_),
      active_(std::exchange(o.active_, false)),
      resumed_(o.resumed_), saved_(o.saved_), final_(o.final_), savedMask_(o.savedMask_),
      finalMask_(o.finalMask_), rseqCsAddr_(o.rseqCsAddr_), rseqCs_(o.rseqCs_),
      scratch_(std::exchange(o.scratch_, 0)), scratchSize_(o.scratchSize_),
      intercepted_(std::move(o.intercepted_)) {}

SyscallSession::~SyscallSession() {
  if (active_) {
    (void)end();
  }
}

Status SyscallSession::resume(int request, const char* what) {
  if (::ptrace(static_cast<__ptrace_request>(request), tid_, nullptr, nullptr) < 0) {
    return fail(Error::sys(tidCtx(tid_) + ": " + what));
  }
  resumed_ = true;
  return {};
}

Result<long> SyscallSession::call(long nr, std::initializer_list<uint64_t> args) {
  if (!active_) {
    return failMsg(tidCtx(tid_) + ": syscall injection after end()");
  }
  if (args.size() > 6) {
    return failMsg("a syscall takes at most 6 arguments");
  }
  user_regs_struct r = saved_;
  r.rip = insn_;
  r.rax = static_cast<uint64_t>(nr);
  // -1: not in a syscall, so no restart logic applies on the way back to user space.
  r.orig_rax = ~uint64_t{0};
  unsigned long long* slots[6] = {&r.rdi, &r.rsi, &r.rdx, &r.r10, &r.r8, &r.r9};
  size_t i = 0;
  for (uint64_t a : args) {
    *slots[i++] = a;
  }
  CRPIPE_TRY(setRegs(tid_, r));
  if (stepping_) {
    return callStepping();
  }
  const std::string what = "injected syscall " + std::to_string(nr);
  CRPIPE_TRY(resume(PTRACE_SYSCALL, "PTRACE_SYSCALL"));
  bool entered = false;
  for (;;) {
    auto st = waitNextStop(tid_, what.c_str());
    if (!st) {
      return fail(std::move(st).error());
    }
    switch (st->kind) {
      case StopKind::SyscallEntry:
        if (st->nr != static_cast<uint64_t>(nr) || entered) {
          return failMsg(tidCtx(tid_) + ": " + what + ": the thread entered syscall " +
                         std::to_string(st->nr));
        }
        entered = true;
        break;
      case StopKind::SyscallExit:
        if (!entered) {
          // The stop we started from was a syscall-entry stop: this exit is its own.
          break;
        }
        return st->rval;
      case StopKind::Signal:
        if (faultAtInsn(st->sig) || st->sig == SIGTRAP) {
          return failMsg(tidCtx(tid_) + ": " + what + ": the thread got signal " +
                         std::to_string(st->sig) + " at the syscall instruction");
        }
        // Only an unblockable signal gets here; keep it to send again.
        intercepted_.push_back(st->sig);
        break;
      case StopKind::Event:
        break;  // a group-stop: resuming goes on
    }
    CRPIPE_TRY(resume(PTRACE_SYSCALL, "PTRACE_SYSCALL"));
  }
}

// The registers are set: one step over the `syscall` instruction. The step's SIGTRAP, raised
// at syscall exit, stops the thread right after the instruction with the result in rax.
Result<long> SyscallSession::callStepping() {
  const char* what = "injected syscall (single step)";
  CRPIPE_TRY(resume(PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP"));
  for (;;) {
    auto st = waitNextStop(tid_, what);
    if (!st) {
      return fail(std::move(st).error());
    }
    if (st->kind == StopKind::Signal && st->sig == SIGTRAP) {
      auto regs = getRegs(tid_);
      if (!regs) {
        return fail(std::move(regs).error());
      }
      if (regs->rip == insn_ + 2) {
        return static_cast<long>(regs->rax);  // ours: discarded by the next resume
      }
      if (regs->rip != insn_) {
        // Not at the instruction and not after it: the step ran code of the task's.
        return failMsg(tidCtx(tid_) + ": " + what + ": the step stopped at " +
                       hexAddr(regs->rip) + ", not after the syscall instruction at " +
                       hexAddr(insn_));
      }
      // A SIGTRAP from elsewhere, before the syscall ran: kept to send again.
      intercepted_.push_back(SIGTRAP);
    } else if (st->kind == StopKind::Signal) {
      if (faultAtInsn(st->sig)) {
        return failMsg(tidCtx(tid_) + ": " + what + ": the thread got signal " +
                       std::to_string(st->sig) + " at the syscall instruction");
      }
      intercepted_.push_back(st->sig);  // only an unblockable signal gets here
    }
    // A group-stop, or a signal kept above: the step goes on.
    CRPIPE_TRY(resume(PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP"));
  }
}

Result<uint64_t> SyscallSession::callChecked(const char* name, long nr,
                                             std::initializer_list<uint64_t> args) {
  auto r = call(nr, args);
  if (!r) {
    return fail(std::move(r).error());
  }
  if (*r < 0 && *r >= -4095) {
    return fail(Error::sys(static_cast<int>(-*r),
                           tidCtx(tid_) + ": " + name + " (injected)"));
  }
  return static_cast<uint64_t>(*r);
}

Result<uint64_t> SyscallSession::scratch(size_t size) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  size = (size + page - 1) / page * page;
  if (scratch_ != 0 && scratchSize_ >= size) {
    return scratch_;
  }
  if (scratch_ != 0) {
    CRPIPE_TRY(callChecked("munmap", SYS_munmap, {scratch_, scratchSize_}));
    scratch_ = 0;
  }
  auto addr = callChecked("mmap", SYS_mmap,
                          {0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           ~uint64_t{0}, 0});
  if (!addr) {
    return fail(std::move(addr).error());
  }
  scratch_ = *addr;
  scratchSize_ = size;
  return scratch_;
}

Status SyscallSession::writeScratch(size_t offset, const void* data, size_t len) {
  if (scratch_ == 0 || offset + len > scratchSize_) {
    return failMsg(tidCtx(tid_) + ": write outside the scratch mapping");
  }
  return writeRemote(tid_, scratch_ + offset, data, len);
}

Status SyscallSession::readScratch(size_t offset, void* data, size_t len) {
  if (scratch_ == 0 || offset + len > scratchSize_) {
    return failMsg(tidCtx(tid_) + ": read outside the scratch mapping");
  }
  return readRemote(tid_, scratch_ + offset, data, len);
}

Status SyscallSession::reenterInterruptStop() {
  if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, nullptr) < 0) {
    return fail(Error::sys(tidCtx(tid_) + ": PTRACE_INTERRUPT"));
  }
  CRPIPE_TRY(resume(PTRACE_CONT, "PTRACE_CONT"));
  for (;;) {
    auto st = waitNextStop(tid_, "return to the interrupt stop");
    if (!st) {
      return fail(std::move(st).error());
    }
    if (st->kind == StopKind::Event) {
      return {};
    }
    if (st->kind == StopKind::Signal) {
      intercepted_.push_back(st->sig);
    }
    CRPIPE_TRY(resume(PTRACE_CONT, "PTRACE_CONT"));
  }
}

Status SyscallSession::end() {
  if (!active_) {
    return {};
  }
  Status first;
  auto keep = [&first](Status s) {
    if (!s && first) {
      first = std::move(s);
    }
  };
  if (scratch_ != 0) {
    auto r = callChecked("munmap", SYS_munmap, {scratch_, scratchSize_});
    keep(r ? Status{} : Status(std::unexpected(std::move(r).error())));
    scratch_ = 0;
  }
  active_ = false;
  keep(setRegs(tid_, final_ ? *final_ : saved_));
  if (resumed_ && rseqCsAddr_ != 0 && rseqCs_ != 0) {
    keep(writeRemote(tid_, rseqCsAddr_, &rseqCs_, sizeof(rseqCs_)));
  }
  uint64_t mask = finalMask_ ? *finalMask_ : savedMask_;
  if (::ptrace(PTRACE_SETSIGMASK, tid_, reinterpret_cast<void*>(sizeof(uint64_t)), &mask) < 0) {
    keep(fail(Error::sys(tidCtx(tid_) + ": PTRACE_SETSIGMASK (restore)")));
  }
  if (resumed_) {
    keep(reenterInterruptStop());
  }
  for (int sig : intercepted_) {
    if (::syscall(SYS_tkill, tid_, sig) < 0) {
      keep(fail(Error::sys(tidCtx(tid_) + ": tkill " + std::to_string(sig))));
    }
  }
  intercepted_.clear();
  return first;
}

}  // namespace crpipe::inject
