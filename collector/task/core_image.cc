#include "collector/task/core_image.h"

#include <signal.h>
#include <sys/resource.h>

#include <cstring>

#include "common/proc.h"
#include "common/ptrace/regs.h"
#include "common/ptrace/remote_mem.h"

namespace crpipe::collector::task {

namespace {

void fillGpregs(const user_regs_struct& r, images::UserX86RegsEntry* g) {
  g->set_r15(r.r15);
  g->set_r14(r.r14);
  g->set_r13(r.r13);
  g->set_r12(r.r12);
  g->set_bp(r.rbp);
  g->set_bx(r.rbx);
  g->set_r11(r.r11);
  g->set_r10(r.r10);
  g->set_r9(r.r9);
  g->set_r8(r.r8);
  g->set_ax(r.rax);
  g->set_cx(r.rcx);
  g->set_dx(r.rdx);
  g->set_si(r.rsi);
  g->set_di(r.rdi);
  g->set_orig_ax(r.orig_rax);
  g->set_ip(r.rip);
  g->set_cs(r.cs);
  g->set_flags(r.eflags);
  g->set_sp(r.rsp);
  g->set_ss(r.ss);
  g->set_fs_base(r.fs_base);
  g->set_gs_base(r.gs_base);
  g->set_ds(r.ds);
  g->set_es(r.es);
  g->set_fs(r.fs);
  g->set_gs(r.gs);
  g->set_mode(images::NATIVE);
}

template <typename T, typename Field>
void addWords(const std::string& xs, inject::XstateComponent c, Field* out) {
  if (c.size == 0 || c.offset + c.size > xs.size()) {
    return;
  }
  for (uint32_t off = 0; off + sizeof(T) <= c.size; off += sizeof(T)) {
    T v;
    std::memcpy(&v, xs.data() + c.offset + off, sizeof(T));
    out->Add(v);
  }
}

void fillFpregs(const ThreadState& t, images::UserX86FpregsEntry* f) {
  const user_fpregs_struct& fp = t.fp;
  f->set_cwd(fp.cwd);
  f->set_swd(fp.swd);
  f->set_twd(fp.ftw);
  f->set_fop(fp.fop);
  f->set_rip(fp.rip);
  f->set_rdp(fp.rdp);
  f->set_mxcsr(fp.mxcsr);
  f->set_mxcsr_mask(fp.mxcr_mask);
  for (unsigned v : fp.st_space) {
    f->add_st_space(v);
  }
  for (unsigned v : fp.xmm_space) {
    f->add_xmm_space(v);
  }
  for (unsigned v : fp.padding) {
    f->add_padding(v);
  }
  // The xsave header follows the 512-byte legacy area; xstate_bv says which components
  // hold non-initial state.
  if (t.xstate.size() >= 576) {
    auto* x = f->mutable_xsave();
    uint64_t bv;
    std::memcpy(&bv, t.xstate.data() + 512, 8);
    x->set_xstate_bv(bv);
    addWords<uint32_t>(t.xstate, inject::xstateComponent(2), x->mutable_ymmh_space());
    addWords<uint64_t>(t.xstate, inject::xstateComponent(3), x->mutable_bndreg_state());
    addWords<uint64_t>(t.xstate, inject::xstateComponent(4), x->mutable_bndcsr_state());
    addWords<uint64_t>(t.xstate, inject::xstateComponent(5), x->mutable_opmask_reg());
    addWords<uint64_t>(t.xstate, inject::xstateComponent(6), x->mutable_zmm_upper());
    addWords<uint64_t>(t.xstate, inject::xstateComponent(7), x->mutable_hi16_zmm());
    addWords<uint32_t>(t.xstate, inject::xstateComponent(9), x->mutable_pkru());
  }
}

images::SignalQueueEntry queue(const std::vector<std::string>& infos) {
  images::SignalQueueEntry q;
  for (const auto& s : infos) {
    q.add_signals()->set_siginfo(s);
  }
  return q;
}

// struct rseq_cs of the rseq ABI.
struct RseqCs {
  uint32_t version;
  uint32_t flags;
  uint64_t startIp;
  uint64_t postCommitOffset;
  uint64_t abortIp;
};

// Where the thread must go on when restored: the abort handler if it is inside an rseq
// critical section (the restored kernel knows nothing of it), else where it stopped.
Result<uint64_t> rseqFixedIp(pid_t pid, const ThreadState& t, uint64_t ip, uint64_t& csPtr) {
  csPtr = 0;
  if (t.rseqAbi == 0) {
    return ip;
  }
  CRPIPE_TRY(inject::readRemote(pid, t.rseqAbi + 8, &csPtr, 8));
  if (csPtr == 0) {
    return ip;
  }
  RseqCs cs{};
  CRPIPE_TRY(inject::readRemote(pid, csPtr, &cs, sizeof(cs)));
  if (ip >= cs.startIp && ip - cs.startIp < cs.postCommitOffset) {
    return cs.abortIp;
  }
  return ip;
}

}  // namespace

Result<images::CoreEntry> threadCore(pid_t pid, const ThreadState& t) {
  if (t.status.seccomp != 0) {
    return failMsg("tid " + std::to_string(t.tid) + ": seccomp mode " +
                   std::to_string(t.status.seccomp) +
                   " is on; crpipe cannot dump seccomp filters yet, nothing was dumped");
  }
  images::CoreEntry core;
  core.set_mtype(images::CoreEntry::X86_64);
  auto* ti = core.mutable_thread_info();
  ti->set_clear_tid_addr(t.clearTidAddr);
  user_regs_struct regs = inject::withSyscallRestarted(t.regs);
  uint64_t csPtr = 0;
  auto ip = rseqFixedIp(pid, t, regs.rip, csPtr);
  if (!ip) {
    return fail(std::move(ip).error().context("tid " + std::to_string(t.tid) + ": rseq"));
  }
  regs.rip = *ip;
  fillGpregs(regs, ti->mutable_gpregs());
  fillFpregs(t, ti->mutable_fpregs());

  auto* tc = core.mutable_thread_core();
  tc->set_futex_rla(t.robustHead);
  tc->set_futex_rla_len(static_cast<uint32_t>(t.robustLen));
  tc->set_sched_nice(t.nice);
  tc->set_sched_policy(static_cast<uint32_t>(t.schedPolicy));
  tc->set_sched_prio(static_cast<uint32_t>(t.schedPrio));
  tc->set_blk_sigset(t.sigmask);
  auto* sas = tc->mutable_sas();
  sas->set_ss_sp(t.sasSp);
  sas->set_ss_size(t.sasSize);
  sas->set_ss_flags(t.sasFlags);
  tc->set_pdeath_sig(t.pdeathSig);
  if (!t.pending.empty()) {
    *tc->mutable_signals_p() = queue(t.pending);
  }
  auto* creds = tc->mutable_creds();
  *creds = t.status.creds;
  creds->set_secbits(t.secbits);
  tc->set_seccomp_mode(images::SECCOMP_DISABLED);
  tc->set_comm(t.comm);
  if (t.rseqAbi != 0) {
    auto* r = tc->mutable_rseq_entry();
    r->set_rseq_abi_pointer(t.rseqAbi);
    r->set_rseq_abi_size(t.rseqLen);
    r->set_signature(t.rseqSig);
    if (csPtr != 0) {
      r->set_rseq_cs_pointer(csPtr);
    }
  }
  return core;
}

Status addTaskCore(pid_t pid, const ThreadState& leader, const ProcessState& p,
                   images::CoreEntry& core) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  auto* tc = core.mutable_tc();
  // CRIU's TASK_ALIVE; a stopped process (state T) is refused by the caller.
  tc->set_task_state(1);
  tc->set_exit_code(0);
  auto pers = readProcFile(dir + "personality");
  if (!pers) {
    return fail(std::move(pers).error());
  }
  tc->set_personality(static_cast<uint32_t>(std::stoul(*pers, nullptr, 16)));
  auto statText = readProcFile(dir + "stat");
  if (!statText) {
    return fail(std::move(statText).error());
  }
  auto stat = parseProcStat(*statText);
  if (!stat) {
    return fail(std::move(stat).error().context(dir + "stat"));
  }
  tc->set_flags(static_cast<uint32_t>(stat->flags));
  tc->set_blk_sigset(leader.sigmask);
  tc->set_comm(leader.comm);
  auto* timers = tc->mutable_timers();
  images::ItimerEntry* its[3] = {timers->mutable_real(), timers->mutable_virt(),
                                 timers->mutable_prof()};
  for (int i = 0; i < 3; ++i) {
    its[i]->set_isec(p.itimers[i].isec);
    its[i]->set_iusec(p.itimers[i].iusec);
    its[i]->set_vsec(p.itimers[i].vsec);
    its[i]->set_vusec(p.itimers[i].vusec);
  }
  auto* rl = tc->mutable_rlimits();
  auto limitsText = readProcFile(dir + "limits");
  if (!limitsText) {
    return fail(std::move(limitsText).error().context("pid " + std::to_string(pid)));
  }
  auto limits = parseProcLimits(*limitsText);
  if (!limits) {
    return fail(std::move(limits).error().context("pid " + std::to_string(pid)));
  }
  if (limits->size() < RLIM_NLIMITS) {
    return failMsg("pid " + std::to_string(pid) + ": /proc/PID/limits lists " +
                   std::to_string(limits->size()) + " limits, not " + std::to_string(RLIM_NLIMITS));
  }
  for (int r = 0; r < RLIM_NLIMITS; ++r) {
    auto* e = rl->add_rlimits();
    e->set_cur((*limits)[r].cur);
    e->set_max((*limits)[r].max);
  }
  if (!p.sharedPending.empty()) {
    *tc->mutable_signals_s() = queue(p.sharedPending);
  }
  auto loginuid = readProcFile(dir + "loginuid");
  if (loginuid) {
    tc->set_loginuid(static_cast<uint32_t>(std::stoul(*loginuid)));
  }
  auto oom = readProcFile(dir + "oom_score_adj");
  if (!oom) {
    return fail(std::move(oom).error());
  }
  tc->set_oom_score_adj(std::stoi(*oom));
  for (int sig = 1; sig <= 64; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) {
      continue;
    }
    const auto& ka = p.sigactions[sig - 1];
    auto* sa = tc->add_sigactions();
    sa->set_sigaction(ka.handler);
    sa->set_flags(ka.flags);
    sa->set_restorer(ka.restorer);
    sa->set_mask(ka.mask);
    sa->set_compat_sigaction(false);
  }
  tc->set_child_subreaper(p.childSubreaper);
  auto* ext = tc->mutable_crpipe();
  ext->set_pdeath_sig(leader.pdeathSig);
  ext->set_dumpable(p.dumpable);
  ext->set_no_new_privs(leader.status.creds.no_new_privs() != 0);
  ext->set_brk(p.brk);
  return {};
}

}  // namespace crpipe::collector::task
