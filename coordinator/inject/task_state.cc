// The rest of a restored task's state, injected once its memory is back: the mm's bounds,
// auxv and executable (PR_SET_MM_MAP), signal handlers, timers, fs, prctl flags, limits;
// per thread the tid address, robust list, alternate stack, rseq, name, pending signals,
// credentials (last: they can take away the right to do the rest) and registers.
#include <elf.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/prctl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/ptrace.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/proc.h"
#include "common/ptrace/regs.h"
#include "common/ptrace/remote_mem.h"
#include "coordinator/inject/injected_task.h"

namespace crpipe::inject {

namespace {

// struct sigaction as the kernel takes it (rt_sigaction, 8-byte sigset).
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

struct KernelStack {
  uint64_t sp;
  int32_t flags;
  int32_t pad;
  uint64_t size;
};

// The signals whose action is not SIG_DFL in `pid`: SigIgn | SigCgt of /proc/PID/status,
// bit sig-1 for each.
Result<uint64_t> signalsNotDefault(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/status";
  auto text = readProcFile(path);
  if (!text) {
    return fail(std::move(text).error());
  }
  uint64_t bits = 0;
  for (const char* key : {"SigIgn", "SigCgt"}) {
    auto v = procStatusField(*text, key);
    if (!v) {
      return failMsg(path + ": no " + key + ":");
    }
    bits |= std::strtoull(std::string(*v).c_str(), nullptr, 16);
  }
  return bits;
}

Status writeProcFile(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return failSys("open " + path);
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) {
    return fail(Error::sys(err, "write " + path));
  }
  return {};
}

}  // namespace

Result<uint64_t> InjectedTask::put(uint64_t offset, const void* data, size_t len) {
  if (kScratchOffset + offset + len > kTrampolineSize) {
    return failMsg(where() + ": " + std::to_string(len) + " bytes do not fit the scratch area");
  }
  CRPIPE_TRY(writeRemote(pid, scratch() + offset, data, len));
  return scratch() + offset;
}

Result<uint64_t> InjectedTask::putString(uint64_t offset, const std::string& s) {
  return put(offset, s.c_str(), s.size() + 1);
}

Result<std::string> InjectedTask::filePath(uint32_t id, const std::string& what) const {
  auto it = files->find(id);
  if (it == files->end() || !it->second.has_reg()) {
    return failMsg(what + ": file id " + std::to_string(id) + " is not a regular file in files.img");
  }
  const auto& reg = it->second.reg();
  if (reg.has_crpipe() && reg.crpipe().unlinked()) {
    return failMsg(what + " " + reg.name() +
                   " was unlinked when dumped; restoring deleted files is not supported yet");
  }
  return reg.name();
}

Status restoreProcessState(InjectedTask& t) {
  SyscallSession& s = t.leader();
  const std::string w = t.where();
  const images::TaskCoreEntry& tc = t.image->threads[0].core.tc();
  const images::MmEntry& mm = t.image->mm;

  // The restorer's channel and log: from here on the task holds exactly its own fds.
  CRPIPE_TRY_CTX(s.callChecked("close_range", SYS_close_range,
                               {static_cast<uint64_t>(t.serviceFdBase), ~0u, 0}),
                 w + ": close the restorer's service fds");

  // The mm: code/data/stack/args/env bounds, brk, auxv and the executable in one call.
  auto exe = t.filePath(mm.exe_file_id(), "executable");
  if (!exe) {
    return fail(std::move(exe).error().context(w));
  }
  auto exeName = t.putString(0, *exe);
  if (!exeName) {
    return fail(std::move(exeName).error());
  }
  auto exeFd = s.callChecked("open", SYS_openat,
                             {static_cast<uint64_t>(AT_FDCWD), *exeName, O_RDONLY | O_CLOEXEC, 0});
  if (!exeFd) {
    return fail(std::move(exeFd).error().context(w + ": executable " + *exe));
  }
  std::vector<uint64_t> auxv(mm.mm_saved_auxv().begin(), mm.mm_saved_auxv().end());
  auto auxvAddr = t.put(8192, auxv.data(), auxv.size() * 8);
  if (!auxvAddr) {
    return fail(std::move(auxvAddr).error());
  }
  prctl_mm_map map{};
  map.start_code = mm.mm_start_code();
  map.end_code = mm.mm_end_code();
  map.start_data = mm.mm_start_data();
  map.end_data = mm.mm_end_data();
  map.start_stack = mm.mm_start_stack();
  map.start_brk = mm.mm_start_brk();
  map.brk = mm.mm_brk();
  map.arg_start = mm.mm_arg_start();
  map.arg_end = mm.mm_arg_end();
  map.env_start = mm.mm_env_start();
  map.env_end = mm.mm_env_end();
  map.auxv = reinterpret_cast<__u64*>(*auxvAddr);
  map.auxv_size = static_cast<uint32_t>(auxv.size() * 8);
  map.exe_fd = static_cast<uint32_t>(*exeFd);
  auto mapAddr = t.put(4096, &map, sizeof(map));
  if (!mapAddr) {
    return fail(std::move(mapAddr).error());
  }
  CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_MM_MAP)", SYS_prctl,
                               {PR_SET_MM, PR_SET_MM_MAP, *mapAddr, sizeof(map), 0}),
                 w + ": mm bounds, auxv and executable " + *exe);
  CRPIPE_TRY_CTX(s.callChecked("close", SYS_close, {*exeFd}), w);
  if (mm.thp_disabled()) {
    CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_THP_DISABLE)", SYS_prctl,
                                 {PR_SET_THP_DISABLE, 1, 0, 0, 0}), w);
  }

  // Every handler the restorer does not hold already. A signal neither ignored nor caught
  // by the restorer (SigIgn, SigCgt) is SIG_DFL with no flags, restorer or mask: execve
  // resets them all, and the restorer only ever sets SIG_IGN (SIGPIPE). Such a signal whose
  // dumped action is the same needs no rt_sigaction: most of ~62 injected syscalls a task,
  // two ptrace stops each.
  auto restorerSigs = signalsNotDefault(t.pid);
  if (!restorerSigs) {
    return fail(std::move(restorerSigs).error().context(w));
  }
  int sig = 0;
  for (const auto& sa : tc.sigactions()) {
    do {
      ++sig;
    } while (sig == SIGKILL || sig == SIGSTOP);
    KernelSigaction ka{sa.sigaction(), sa.flags(), sa.restorer(), sa.mask()};
    if (ka.handler == 0 && ka.flags == 0 && ka.restorer == 0 && ka.mask == 0 &&
        (*restorerSigs & (1ull << (sig - 1))) == 0) {
      continue;
    }
    auto addr = t.put(0, &ka, sizeof(ka));
    if (!addr) {
      return fail(std::move(addr).error());
    }
    CRPIPE_TRY_CTX(s.callChecked("rt_sigaction", SYS_rt_sigaction,
                                 {static_cast<uint64_t>(sig), *addr, 0, 8}),
                   w + ": signal " + std::to_string(sig));
  }

  if (tc.has_timers()) {
    const images::ItimerEntry* its[3] = {&tc.timers().real(), &tc.timers().virt(),
                                         &tc.timers().prof()};
    const int which[3] = {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF};
    for (int i = 0; i < 3; ++i) {
      const auto& it = *its[i];
      if (it.isec() == 0 && it.iusec() == 0 && it.vsec() == 0 && it.vusec() == 0) {
        continue;
      }
      itimerval v{};
      v.it_interval = {static_cast<time_t>(it.isec()), static_cast<suseconds_t>(it.iusec())};
      v.it_value = {static_cast<time_t>(it.vsec()), static_cast<suseconds_t>(it.vusec())};
      if (v.it_value.tv_sec == 0 && v.it_value.tv_usec == 0) {
        continue;  // disarmed: an interval alone does nothing
      }
      auto addr = t.put(0, &v, sizeof(v));
      if (!addr) {
        return fail(std::move(addr).error());
      }
      CRPIPE_TRY_CTX(s.callChecked("setitimer", SYS_setitimer,
                                   {static_cast<uint64_t>(which[i]), *addr, 0}),
                     w + ": interval timer " + std::to_string(which[i]));
    }
  }
  CRPIPE_TRY_CTX(s.callChecked("personality", SYS_personality, {tc.personality()}), w);

  if (t.image->hasFs) {
    const auto& fs = t.image->fs;
    CRPIPE_TRY_CTX(s.callChecked("umask", SYS_umask, {fs.umask()}), w);
    auto cwd = t.filePath(fs.cwd_id(), "working directory");
    if (!cwd) {
      return fail(std::move(cwd).error().context(w));
    }
    auto root = t.filePath(fs.root_id(), "root directory");
    if (!root) {
      return fail(std::move(root).error().context(w));
    }
    auto a = t.putString(0, *cwd);
    if (!a) {
      return fail(std::move(a).error());
    }
    CRPIPE_TRY_CTX(s.callChecked("chdir", SYS_chdir, {*a}), w + ": working directory " + *cwd);
    if (*root != "/") {
      auto r = t.putString(0, *root);
      if (!r) {
        return fail(std::move(r).error());
      }
      CRPIPE_TRY_CTX(s.callChecked("chroot", SYS_chroot, {*r}), w + ": root " + *root);
    }
  }

  int dumpable = mm.has_dumpable() ? mm.dumpable() : 1;
  CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_DUMPABLE)", SYS_prctl,
                               {PR_SET_DUMPABLE, static_cast<uint64_t>(dumpable), 0, 0, 0}), w);
  if (tc.child_subreaper()) {
    CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_CHILD_SUBREAPER)", SYS_prctl,
                                 {PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0}), w);
  }

  // Limits from outside (the restorer raised RLIMIT_NOFILE for its service fds).
  int res = 0;
  for (const auto& rl : tc.rlimits().rlimits()) {
    rlimit64 v{rl.cur(), rl.max()};
    if (::prlimit64(t.pid, static_cast<__rlimit_resource>(res), &v, nullptr) < 0) {
      return fail(Error::sys(w + ": prlimit of resource " + std::to_string(res)));
    }
    ++res;
  }
  if (tc.has_oom_score_adj()) {
    CRPIPE_TRY(writeProcFile("/proc/" + std::to_string(t.pid) + "/oom_score_adj",
                             std::to_string(tc.oom_score_adj())));
  }
  return {};
}

Status restoreThreadState(InjectedTask& t, InjectedThread& th) {
  SyscallSession& s = *th.session;
  const images::ThreadCoreEntry& tc = th.image->core.thread_core();
  const std::string w = "pid " + std::to_string(t.pid) + " tid " + std::to_string(th.tid);
  // The restorer asked to die with its parent; the task may have asked for something else.
  CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_PDEATHSIG)", SYS_prctl,
                               {PR_SET_PDEATHSIG, tc.pdeath_sig(), 0, 0, 0}), w);
  CRPIPE_TRY_CTX(s.callChecked("set_tid_address", SYS_set_tid_address,
                               {th.image->core.thread_info().clear_tid_addr()}), w);
  if (tc.futex_rla() != 0) {
    CRPIPE_TRY_CTX(s.callChecked("set_robust_list", SYS_set_robust_list,
                                 {tc.futex_rla(), tc.futex_rla_len()}), w);
  }
  KernelStack ss{0, SS_DISABLE, 0, 0};
  if (tc.has_sas() && tc.sas().ss_size() != 0 && (tc.sas().ss_flags() & SS_DISABLE) == 0) {
    ss = {tc.sas().ss_sp(), static_cast<int32_t>(tc.sas().ss_flags() & ~SS_ONSTACK), 0,
          tc.sas().ss_size()};
  }
  auto ssAddr = t.put(0, &ss, sizeof(ss));
  if (!ssAddr) {
    return fail(std::move(ssAddr).error());
  }
  CRPIPE_TRY_CTX(s.callChecked("sigaltstack", SYS_sigaltstack, {*ssAddr, 0}), w);
  if (tc.has_rseq_entry() && tc.rseq_entry().rseq_abi_pointer() != 0) {
    const auto& r = tc.rseq_entry();
    CRPIPE_TRY_CTX(s.callChecked("rseq", SYS_rseq,
                                 {r.rseq_abi_pointer(), r.rseq_abi_size(), 0, r.signature()}),
                   w + ": rseq");
  }
  std::string comm = tc.has_comm() ? tc.comm()
                     : th.tid == t.pid ? th.image->core.tc().comm()
                                       : std::string();
  if (!comm.empty()) {
    auto a = t.putString(0, comm.substr(0, 15));
    if (!a) {
      return fail(std::move(a).error());
    }
    CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_NAME)", SYS_prctl, {PR_SET_NAME, *a, 0, 0, 0}), w);
  }
  if (tc.has_sched_nice()) {
    CRPIPE_TRY_CTX(s.callChecked("setpriority", SYS_setpriority,
                                 {PRIO_PROCESS, static_cast<uint64_t>(th.tid),
                                  static_cast<uint64_t>(static_cast<int64_t>(tc.sched_nice()))}),
                   w);
  }
  uint64_t mask = tc.has_blk_sigset() ? tc.blk_sigset()
                  : th.tid == t.pid   ? th.image->core.tc().blk_sigset()
                                      : 0;
  s.setSigmaskOnEnd(mask);
  return {};
}

Status queuePendingSignals(InjectedTask& t) {
  // From the leader: the kernel lets a process queue any siginfo (si_code >= 0 too) only to
  // itself, and it compares the caller's pid — the leader's tid — with the target tgid.
  SyscallSession& s = t.leader();
  auto queue = [&](const images::SignalQueueEntry& q, pid_t tid) -> Status {
    for (const auto& e : q.signals()) {
      const std::string& info = e.siginfo();
      if (info.size() != 128) {
        return failMsg(t.where() + ": a pending siginfo of " + std::to_string(info.size()) +
                       " bytes");
      }
      int32_t signo = 0;
      std::memcpy(&signo, info.data(), 4);
      auto a = t.put(0, info.data(), info.size());
      if (!a) {
        return fail(std::move(a).error());
      }
      auto r = tid != 0 ? s.callChecked("rt_tgsigqueueinfo", SYS_rt_tgsigqueueinfo,
                                        {static_cast<uint64_t>(t.pid), static_cast<uint64_t>(tid),
                                         static_cast<uint64_t>(signo), *a})
                        : s.callChecked("rt_sigqueueinfo", SYS_rt_sigqueueinfo,
                                        {static_cast<uint64_t>(t.pid), static_cast<uint64_t>(signo),
                                         *a});
      if (!r) {
        return fail(std::move(r).error().context(t.where() + ": pending signal " +
                                                 std::to_string(signo)));
      }
    }
    return {};
  };
  for (const auto& th : t.threads) {
    CRPIPE_TRY(queue(th.image->core.thread_core().signals_p(), th.tid));
  }
  return queue(t.image->threads[0].core.tc().signals_s(), 0);
}

Status restoreCredentials(InjectedTask& t, InjectedThread& th) {
  const auto& tc = th.image->core.thread_core();
  if (!tc.has_creds()) {
    return {};
  }
  SyscallSession& s = *th.session;
  const images::CredsEntry& c = tc.creds();
  const std::string w = "pid " + std::to_string(t.pid) + " tid " + std::to_string(th.tid);
  std::vector<uint32_t> groups(c.groups().begin(), c.groups().end());
  groups.push_back(0);  // never empty: put() copies from data()
  auto g = t.put(0, groups.data(), groups.size() * 4);
  groups.pop_back();
  if (!g) {
    return fail(std::move(g).error());
  }
  CRPIPE_TRY_CTX(s.callChecked("setgroups", SYS_setgroups, {groups.size(), *g}), w);
  if (c.no_new_privs() != 0) {
    CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl,
                                 {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0}), w);
  }
  const bool root = c.uid() == 0 && c.euid() == 0 && c.suid() == 0 && c.fsuid() == 0;
  CRPIPE_TRY_CTX(s.callChecked("setresgid", SYS_setresgid, {c.gid(), c.egid(), c.sgid()}), w);
  CRPIPE_TRY_CTX(s.callChecked("setfsgid", SYS_setfsgid, {c.fsgid()}), w);
  if (!root) {
    // Keep the permitted set across the uid change, then cut it to what was dumped.
    CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_KEEPCAPS)", SYS_prctl, {PR_SET_KEEPCAPS, 1, 0, 0, 0}),
                   w);
    CRPIPE_TRY_CTX(s.callChecked("setresuid", SYS_setresuid, {c.uid(), c.euid(), c.suid()}), w);
    CRPIPE_TRY_CTX(s.callChecked("setfsuid", SYS_setfsuid, {c.fsuid()}), w);
    CRPIPE_TRY_CTX(s.callChecked("prctl(PR_SET_KEEPCAPS)", SYS_prctl, {PR_SET_KEEPCAPS, 0, 0, 0, 0}),
                   w);
  }
  if (c.cap_eff_size() == 2 && c.cap_prm_size() == 2 && c.cap_inh_size() == 2) {
    struct {
      __user_cap_header_struct head;
      __user_cap_data_struct data[2];
    } caps{};
    caps.head = {_LINUX_CAPABILITY_VERSION_3, 0};
    for (int i = 0; i < 2; ++i) {
      caps.data[i] = {c.cap_eff(i), c.cap_prm(i), c.cap_inh(i)};
    }
    auto a = t.put(0, &caps, sizeof(caps));
    if (!a) {
      return fail(std::move(a).error());
    }
    CRPIPE_TRY_CTX(s.callChecked("capset", SYS_capset, {*a, *a + sizeof(caps.head)}), w);
  }
  return {};
}

void setFinalRegisters(InjectedThread& th) {
  const auto& g = th.image->core.thread_info().gpregs();
  user_regs_struct r{};
  r.r15 = g.r15(); r.r14 = g.r14(); r.r13 = g.r13(); r.r12 = g.r12();
  r.rbp = g.bp(); r.rbx = g.bx(); r.r11 = g.r11(); r.r10 = g.r10();
  r.r9 = g.r9(); r.r8 = g.r8(); r.rax = g.ax(); r.rcx = g.cx();
  r.rdx = g.dx(); r.rsi = g.si(); r.rdi = g.di(); r.rip = g.ip();
  r.cs = g.cs(); r.eflags = g.flags(); r.rsp = g.sp(); r.ss = g.ss();
  r.fs_base = g.fs_base(); r.gs_base = g.gs_base();
  r.ds = g.ds(); r.es = g.es(); r.fs = g.fs(); r.gs = g.gs();
  // The dump already turned an interrupted restartable syscall into one that runs again
  // (ax = the number, ip on the `syscall`): no restart logic may apply on top of it.
  r.orig_rax = ~0ull;
  th.session->setRegsOnEnd(r);
}

Status restoreFpu(pid_t tid, const ThreadImage& image) {
  const auto& f = image.core.thread_info().fpregs();
  user_fpregs_struct fp{};
  fp.cwd = static_cast<unsigned short>(f.cwd());
  fp.swd = static_cast<unsigned short>(f.swd());
  fp.ftw = static_cast<unsigned short>(f.twd());
  fp.fop = static_cast<unsigned short>(f.fop());
  fp.rip = f.rip();
  fp.rdp = f.rdp();
  fp.mxcsr = f.mxcsr();
  fp.mxcr_mask = f.mxcsr_mask();
  for (int i = 0; i < f.st_space_size() && i < 32; ++i) {
    fp.st_space[i] = f.st_space(i);
  }
  for (int i = 0; i < f.xmm_space_size() && i < 64; ++i) {
    fp.xmm_space[i] = f.xmm_space(i);
  }
  auto cur = getXstate(tid);
  if (!cur) {
    return fail(std::move(cur).error());
  }
  const std::string ctx = "tid " + std::to_string(tid) + ": FPU state";
  if (cur->size() < 576 || !f.has_xsave()) {
    iovec iov{&fp, sizeof(fp)};
    if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_PRFPREG), &iov) < 0) {
      return fail(Error::sys(ctx + ": PTRACE_SETREGSET NT_PRFPREG"));
    }
    return {};
  }
  // This thread's own XSAVE area as the layout to fill: the legacy area (without the
  // software-reserved bytes the kernel keeps at 464), the header, each component the
  // dump has at the offset CPUID gives.
  std::string x = std::move(*cur);
  std::memcpy(x.data(), &fp, 416);
  const auto& xs = f.xsave();
  uint64_t known = (1u << 0) | (1u << 1);
  auto putWords = [&x, &known](unsigned index, const auto& words, size_t wordSize) {
    XstateComponent c = xstateComponent(index);
    size_t bytes = static_cast<size_t>(words.size()) * wordSize;
    if (c.size == 0 || bytes == 0 || bytes > c.size || c.offset + bytes > x.size()) {
      return;
    }
    for (int i = 0; i < words.size(); ++i) {
      uint64_t v = words.Get(i);
      std::memcpy(x.data() + c.offset + static_cast<size_t>(i) * wordSize, &v, wordSize);
    }
    known |= 1ull << index;
  };
  putWords(2, xs.ymmh_space(), 4);
  putWords(3, xs.bndreg_state(), 8);
  putWords(4, xs.bndcsr_state(), 8);
  putWords(5, xs.opmask_reg(), 8);
  putWords(6, xs.zmm_upper(), 8);
  putWords(7, xs.hi16_zmm(), 8);
  putWords(9, xs.pkru(), 4);
  uint64_t bv = xs.xstate_bv() & known;
  std::memcpy(x.data() + 512, &bv, 8);
  std::memset(x.data() + 520, 0, 8);  // xcomp_bv: the standard format
  return setXstate(tid, x);
}

}  // namespace crpipe::inject
