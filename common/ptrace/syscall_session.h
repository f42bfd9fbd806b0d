#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

#include "common/result.h"

// Runs system calls inside a thread that the caller traces and holds in a ptrace-stop
// (PTRACE_SEIZE + PTRACE_INTERRUPT, as the collector's FrozenTree holds every thread, or a
// restorer's own stopped child). Used by the collector to ask a task what only the task can
// say, and by the restorer to shape a task's address space.
//
// How one call runs: the thread's registers are set to rip = a `syscall` instruction,
// rax = the number, rdi/rsi/rdx/r10/r8/r9 = the arguments, orig_rax = -1; PTRACE_SYSCALL
// stops it at syscall entry, PTRACE_SYSCALL again at syscall exit, where
// PTRACE_GET_SYSCALL_INFO gives the return value. No instruction of the task is written
// and no signal is raised: an int3 or a single-step sends SIGTRAP through force_sig(),
// which resets the handler of a task that blocks or ignores SIGTRAP. beginStepping() does
// single-step, for a caller that checked the task neither ignores SIGTRAP nor has one
// pending: it leaves SIGTRAP unblocked and discards the step's SIGTRAP (one stop a call
// instead of two).
//
// What end() puts back (the destructor calls it if the caller did not):
//  - the registers saved at begin() (or those given to setRegsOnEnd());
//  - the signal mask: every signal is blocked while the session runs, so that a signal
//    arriving meanwhile stays pending instead of being delivered with borrowed registers;
//  - rseq: the kernel clears the thread's rseq_cs when the thread returns to user space
//    outside the critical section, as it does at our borrowed rip; the saved value is
//    written back so that an interrupted critical section still aborts when the thread
//    really resumes;
//  - the kind of stop: the thread is driven back into a PTRACE_EVENT_STOP
//    (PTRACE_INTERRUPT + PTRACE_CONT from the syscall-exit stop). That stop lies inside
//    the kernel's signal path, so when the thread is finally resumed the kernel's own
//    syscall restart logic runs on the restored registers: a thread that was interrupted
//    in a restartable syscall (orig_rax >= 0, rax = -ERESTART*) restarts it exactly as if
//    it had never been stopped.
//  - the scratch mapping (scratch()) is unmapped.
// A signal other than SIGKILL that still reaches the thread (SIGSTOP cannot be blocked) is
// sent again with tgkill() after the mask is restored.
namespace crpipe::inject {

class SyscallSession {
 public:
  // `tid` must be in a ptrace-stop of this thread's tracee. `syscallInsn` is the address of
  // a `syscall` instruction (0f 05) in an executable mapping of the task; findSyscallInsn()
  // finds one. The session sets PTRACE_O_TRACESYSGOOD (syscall stops are told apart from
  // SIGTRAP only with it); `tracerOptions` are the PTRACE_O_* the caller traces with, which
  // are kept (PTRACE_SETOPTIONS replaces the whole set).
  static Result<SyscallSession> begin(pid_t tid, uint64_t syscallInsn,
                                      unsigned long tracerOptions = 0);
  // The same with one stop per syscall instead of two, for a caller that only reads (the
  // collector): the thread single-steps over the `syscall` instruction and stops in the
  // SIGTRAP the step raises at syscall exit, which is then discarded. SIGTRAP stays
  // unblocked for the session, so the kernel's forced SIGTRAP leaves the task's handler
  // alone (force_sig resets the handler of a blocked or ignored signal). Only for a task
  // that neither ignores SIGTRAP nor has one pending (/proc status SigIgn, SigPnd,
  // ShdPnd): the caller checks. Its syscalls must not change SIGTRAP's disposition or
  // queue signals (the restorer's do: it uses begin()).
  static Result<SyscallSession> beginStepping(pid_t tid, uint64_t syscallInsn,
                                              unsigned long tracerOptions = 0);

  SyscallSession(SyscallSession&& o) noexcept;
  SyscallSession& operator=(SyscallSession&&) = delete;
  SyscallSession(const SyscallSession&) = delete;
  ~SyscallSession();

  // Runs one syscall; returns what the kernel returned (-errno on failure) — an Error only
  // if the injection itself failed.
  Result<long> call(long nr, std::initializer_list<uint64_t> args = {});
  // Like call(), turning a -errno return into an Error that names the syscall.
  Result<uint64_t> callChecked(const char* name, long nr, std::initializer_list<uint64_t> args = {});

  // A read-write anonymous mapping in the task of at least `size` bytes (one page by
  // default), mapped on first use and unmapped by end(). Its address, for syscalls that
  // read or write user memory.
  Result<uint64_t> scratch(size_t size = 4096);
  Status writeScratch(size_t offset, const void* data, size_t len);
  Status readScratch(size_t offset, void* data, size_t len);

  // The registers (and signal mask) the thread had at begin().
  const user_regs_struct& savedRegs() const { return saved_; }
  uint64_t savedSigmask() const { return savedMask_; }
  // For the restorer: leave these registers (or this signal mask) instead of the saved ones.
  void setRegsOnEnd(const user_regs_struct& regs) { final_ = regs; }
  void setSigmaskOnEnd(uint64_t mask) { finalMask_ = mask; }

  // For the restorer, which replaces the whole address space: run the following syscalls
  // from this `syscall` instruction (a trampoline it mapped), and forget the rseq area of
  // the old one (unregistered and unmapped: end() must not write rseq_cs back into it).
  void setSyscallInsn(uint64_t insn) { insn_ = insn; }
  void forgetRseq() { rseqCsAddr_ = 0; }
  uint64_t rseqCsAddr() const { return rseqCsAddr_; }

  pid_t tid() const { return tid_; }
  uint64_t syscallInsn() const { return insn_; }

  // Puts the thread back as described above. Safe to call twice.
  Status end();

 private:
  SyscallSession(pid_t tid, uint64_t insn) : tid_(tid), insn_(insn) {}
  // Waits for the next stop of tid_; signal-delivery stops are noted and suppressed.
  Result<int> waitStop(const char* what);
  Status resume(int request, const char* what);
  Status reenterInterruptStop();

  static Result<SyscallSession> start(pid_t tid, uint64_t syscallInsn,
                                      unsigned long tracerOptions, bool stepping);
  Result<long> callStepping();

  pid_t tid_ = 0;
  uint64_t insn_ = 0;
  bool stepping_ = false;
  bool active_ = false;
  bool resumed_ = false;  // the thread ran at least once: its stop is not the original one
  user_regs_struct saved_{};
  std::optional<user_regs_struct> final_;
  uint64_t savedMask_ = 0;
  std::optional<uint64_t> finalMask_;
  uint64_t rseqCsAddr_ = 0;  // &rseq->rseq_cs, 0 if the thread has no rseq area
  uint64_t rseqCs_ = 0;
  uint64_t scratch_ = 0;
  size_t scratchSize_ = 0;
  std::vector<int> intercepted_;  // signals caught in signal-delivery stops, sent again
};

// The address of a `syscall` instruction usable by SyscallSession in process `pid`: one in
// the vDSO if there is a vDSO, else the one the thread stopped right after (rip - 2, for a
// thread stopped in a syscall), else the first in an executable mapping. `regs` are the
// registers of the thread that will run it.
Result<uint64_t> findSyscallInsn(pid_t pid, const user_regs_struct& regs);

}  // namespace crpipe::inject
