#include "collector/task/thread_state.h"

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/proc.h"
#include "common/ptrace/regs.h"
#include "common/ptrace/syscall_session.h"

namespace crpipe::collector::task {

namespace {

std::string tidCtx(pid_t tid) { return "tid " + std::to_string(tid); }

// Where each injected syscall leaves its answer in the scratch page.
constexpr size_t kSigactOff = 0;      // 64 x 32 bytes
constexpr size_t kItimerOff = 2048;   // 3 x struct itimerval (32 bytes)
constexpr size_t kTidAddrOff = 2176;  // int* of PR_GET_TID_ADDRESS
constexpr size_t kSasOff = 2184;      // stack_t: sp, flags (+pad), size
constexpr size_t kPdeathOff = 2208;   // int
constexpr size_t kSubreaperOff = 2212;  // int
constexpr size_t kScratchUsed = 2216;

// siginfos queued for the thread (or, with PTRACE_PEEKSIGINFO_SHARED, for the process),
// read without dequeuing them.
Result<std::vector<std::string>> peekSiginfo(pid_t tid, bool shared) {
  std::vector<std::string> out;
  constexpr int kBatch = 32;
  siginfo_t buf[kBatch];
  for (uint64_t off = 0;;) {
    __ptrace_peeksiginfo_args args{off, shared ? static_cast<uint32_t>(PTRACE_PEEKSIGINFO_SHARED) : 0u, kBatch};
    long n = ::ptrace(PTRACE_PEEKSIGINFO, tid, &args, buf);
    if (n < 0) {
      return fail(Error::sys(tidCtx(tid) + ": PTRACE_PEEKSIGINFO"));
    }
    if (n == 0) {
      return out;
    }
    for (long i = 0; i < n; ++i) {
      out.emplace_back(reinterpret_cast<const char*>(&buf[i]), sizeof(siginfo_t));
    }
    off += static_cast<uint64_t>(n);
  }
}

Status readFromOutside(pid_t tid, ThreadState& t) {
  auto regs = inject::getRegs(tid);
  if (!regs) {
    return fail(std::move(regs).error());
  }
  t.regs = *regs;
  // A 32-bit (compat) task has other register and signal frame layouts.
  if (t.regs.cs != 0x33) {
    return failMsg(tidCtx(tid) + ": a 32-bit (compat mode) task; crpipe dumps x86_64 tasks only");
  }
  auto fp = inject::getFpregs(tid);
  if (!fp) {
    return fail(std::move(fp).error());
  }
  t.fp = *fp;
  auto xs = inject::getXstate(tid);
  if (!xs) {
    return fail(std::move(xs).error());
  }
  t.xstate = std::move(*xs);
  if (::ptrace(PTRACE_GETSIGMASK, tid, reinterpret_cast<void*>(sizeof(t.sigmask)), &t.sigmask) <
      0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_GETSIGMASK"));
  }
  auto pend = peekSiginfo(tid, false);
  if (!pend) {
    return fail(std::move(pend).error());
  }
  t.pending = std::move(*pend);
  uint64_t head = 0;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": get_robust_list"));
  }
  t.robustHead = head;
  t.robustLen = len;
  int policy = ::sched_getscheduler(tid);
  if (policy < 0) {
    return fail(Error::sys(tidCtx(tid) + ": sched_getscheduler"));
  }
  t.schedPolicy = policy & ~SCHED_RESET_ON_FORK;
  sched_param sp{};
  if (::sched_getparam(tid, &sp) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": sched_getparam"));
  }
  t.schedPrio = sp.sched_priority;
  errno = 0;
  int nice = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (nice == -1 && errno != 0) {
    return fail(Error::sys(tidCtx(tid) + ": getpriority"));
  }
  t.nice = nice;
  __ptrace_rseq_configuration rseq{};
  if (::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, reinterpret_cast<void*>(sizeof(rseq)), &rseq) >
      0) {
    t.rseqAbi = rseq.rseq_abi_pointer;
    t.rseqLen = rseq.rseq_abi_size;
    t.rseqSig = rseq.signature;
  }
  const std::string dir = "/proc/" + std::to_string(tid) + "/";
  auto comm = readProcFile(dir + "comm");
  if (!comm) {
    return fail(std::move(comm).error());
  }
  t.comm = *comm;
  while (!t.comm.empty() && t.comm.back() == '\n') {
    t.comm.pop_back();
  }
  auto status = readProcFile(dir + "status");
  if (!status) {
    return fail(std::move(status).error());
  }
  auto st = parseTaskStatus(*status);
  if (!st) {
    return fail(std::move(st).error().context(dir + "status"));
  }
  t.status = std::move(*st);
  return {};
}

// Pins the calling thread and `tid` to the CPU the caller runs on while it injects
// syscalls, and gives both their affinity back after. Each injected syscall is two ptrace
// stops; a stop that wakes a tracer idling on the other CPU costs an IPI and, in a VM, a
// halt exit (tens of us), a same-CPU switch a few: ~75 syscalls a process add up in a
// large tree. Best effort: a task whose cpuset excludes the CPU is left as it is.
class SameCpuPin {
 public:
  explicit SameCpuPin(pid_t tid) : tid_(tid) {
    int cpu = ::sched_getcpu();
    if (cpu < 0 || ::sched_getaffinity(0, sizeof(self_), &self_) < 0 ||
        ::sched_getaffinity(tid, sizeof(target_), &target_) < 0) {
      return;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (::sched_setaffinity(tid, sizeof(one), &one) < 0) {
      return;
    }
    targetPinned_ = true;
    selfPinned_ = ::sched_setaffinity(0, sizeof(one), &one) == 0;
  }
  ~SameCpuPin() {
    if (targetPinned_) {
      (void)::sched_setaffinity(tid_, sizeof(target_), &target_);
    }
    if (selfPinned_) {
      (void)::sched_setaffinity(0, sizeof(self_), &self_);
    }
  }
  SameCpuPin(const SameCpuPin&) = delete;
  SameCpuPin& operator=(const SameCpuPin&) = delete;

 private:
  pid_t tid_;
  cpu_set_t self_{}, target_{};
  bool targetPinned_ = false, selfPinned_ = false;
};

Status readByInjection(pid_t tid, uint64_t insn, ThreadState& t, ProcessState* proc) {
  SameCpuPin pin(tid);  // declared first: unpinned after the session ended
  // One stop per syscall where the step's SIGTRAP cannot touch the task's own: it does not
  // ignore SIGTRAP and has none pending (SyscallSession::beginStepping).
  const uint64_t trap = uint64_t{1} << (SIGTRAP - 1);
  const bool step = ((t.status.sigIgn | t.status.sigPnd | t.status.shdPnd) & trap) == 0;
  auto s = step ? inject::SyscallSession::beginStepping(tid, insn)
                : inject::SyscallSession::begin(tid, insn);
  if (!s) {
    return fail(std::move(s).error());
  }
  auto scratch = s->scratch();
  if (!scratch) {
    return fail(std::move(scratch).error());
  }
  const uint64_t base = *scratch;
  char buf[kScratchUsed] = {};
  // Zeroed first: a call that fails leaves its slot zero, not stale.
  CRPIPE_TRY(s->writeScratch(0, buf, sizeof(buf)));
  auto must = [&s](const char* name, long nr, std::initializer_list<uint64_t> args) -> Result<uint64_t> {
    return s->callChecked(name, nr, args);
  };
  if (proc != nullptr) {
    for (int sig = 1; sig <= 64; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) {
        continue;
      }
      auto r = must("rt_sigaction", SYS_rt_sigaction,
                    {static_cast<uint64_t>(sig), 0, base + kSigactOff + (sig - 1) * 32, 8});
      if (!r) {
        return fail(std::move(r).error().context("signal " + std::to_string(sig)));
      }
    }
    for (uint64_t which = 0; which < 3; ++which) {
      auto r = must("getitimer", SYS_getitimer, {which, base + kItimerOff + which * 32});
      if (!r) {
        return fail(std::move(r).error());
      }
    }
    auto brk = must("brk", SYS_brk, {0});
    if (!brk) {
      return fail(std::move(brk).error());
    }
    proc->brk = *brk;
    auto dumpable = must("prctl(PR_GET_DUMPABLE)", SYS_prctl, {PR_GET_DUMPABLE});
    if (!dumpable) {
      return fail(std::move(dumpable).error());
    }
    proc->dumpable = static_cast<int>(*dumpable);
    auto sub = must("prctl(PR_GET_CHILD_SUBREAPER)", SYS_prctl,
                    {PR_GET_CHILD_SUBREAPER, base + kSubreaperOff});
    if (!sub) {
      return fail(std::move(sub).error());
    }
    auto thp = must("prctl(PR_GET_THP_DISABLE)", SYS_prctl, {PR_GET_THP_DISABLE, 0, 0, 0, 0});
    if (!thp) {
      return fail(std::move(thp).error());
    }
    proc->thpDisabled = *thp != 0;
  }
  auto tidAddr = must("prctl(PR_GET_TID_ADDRESS)", SYS_prctl,
                      {PR_GET_TID_ADDRESS, base + kTidAddrOff});
  if (!tidAddr) {
    return fail(std::move(tidAddr).error());
  }
  auto sas = must("sigaltstack", SYS_sigaltstack, {0, base + kSasOff});
  if (!sas) {
    return fail(std::move(sas).error());
  }
  auto pd = must("prctl(PR_GET_PDEATHSIG)", SYS_prctl, {PR_GET_PDEATHSIG, base + kPdeathOff});
  if (!pd) {
    return fail(std::move(pd).error());
  }
  auto sec = must("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS});
  if (!sec) {
    return fail(std::move(sec).error());
  }
  t.secbits = static_cast<uint32_t>(*sec);
  CRPIPE_TRY(s->readScratch(0, buf, sizeof(buf)));
  CRPIPE_TRY(s->end());

  auto u64 = [&buf](size_t off) {
    uint64_t v;
    std::memcpy(&v, buf + off, 8);
    return v;
  };
  auto u32 = [&buf](size_t off) {
    uint32_t v;
    std::memcpy(&v, buf + off, 4);
    return v;
  };
  t.clearTidAddr = u64(kTidAddrOff);
  t.sasSp = u64(kSasOff);
  t.sasFlags = u32(kSasOff + 8);
  t.sasSize = u64(kSasOff + 16);
  t.pdeathSig = u32(kPdeathOff);
  if (proc != nullptr) {
    for (int sig = 1; sig <= 64; ++sig) {
      std::memcpy(&proc->sigactions[sig - 1], buf + kSigactOff + (sig - 1) * 32, 32);
    }
    for (size_t w = 0; w < 3; ++w) {
      // struct itimerval: it_interval {sec, usec}, it_value {sec, usec}.
      proc->itimers[w] = {u64(kItimerOff + w * 32), u64(kItimerOff + w * 32 + 8),
                          u64(kItimerOff + w * 32 + 16), u64(kItimerOff + w * 32 + 24)};
    }
    proc->childSubreaper = u32(kSubreaperOff) != 0;
  }
  return {};
}

}  // namespace

Result<ThreadState> readThread(pid_t pid, pid_t tid, uint64_t syscallInsn, ProcessState* proc) {
  ThreadState t;
  t.tid = tid;
  CRPIPE_TRY_CTX(readFromOutside(tid, t), "pid " + std::to_string(pid));
  CRPIPE_TRY_CTX(readByInjection(tid, syscallInsn, t, proc), "pid " + std::to_string(pid));
  if (proc != nullptr) {
    auto shared = peekSiginfo(tid, true);
    if (!shared) {
      return fail(std::move(shared).error());
    }
    proc->sharedPending = std::move(*shared);
  }
  return t;
}

}  // namespace crpipe::collector::task
