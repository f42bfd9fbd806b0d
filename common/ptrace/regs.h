#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <string>

#include "common/result.h"

// Register access of a ptrace-stopped thread through PTRACE_GETREGSET / SETREGSET.
namespace crpipe::inject {

// General purpose registers, fs_base and gs_base included (NT_PRSTATUS).
Result<user_regs_struct> getRegs(pid_t tid);
Status setRegs(pid_t tid, const user_regs_struct& regs);

// The whole XSAVE area in the kernel's user ABI layout (standard, not compacted, format:
// the fxsave legacy area, the xsave header at 512, each component at the offset CPUID leaf
// 0xD gives). Empty if the CPU has no XSAVE; then getFpregs() has the legacy state.
Result<std::string> getXstate(pid_t tid);
Status setXstate(pid_t tid, const std::string& xstate);
Result<user_fpregs_struct> getFpregs(pid_t tid);

// Where a state component (2: AVX, 3/4: MPX, 5/6/7: AVX-512, 9: PKRU) lies in the standard
// XSAVE layout, from CPUID leaf 0xD; {0, 0} if the CPU does not have it.
struct XstateComponent {
  uint32_t offset;
  uint32_t size;
};
XstateComponent xstateComponent(unsigned index);

// The syscall the kernel interrupted, if any: x86_64 reports it in orig_rax (-1 when the
// thread was not in a syscall) with one of the kernel-internal -ERESTART* codes in rax.
inline constexpr long kErestartSys = 512;
inline constexpr long kErestartNoIntr = 513;
inline constexpr long kErestartNoHand = 514;
inline constexpr long kErestartRestartBlock = 516;
bool interruptedRestartable(const user_regs_struct& regs);

// The registers a thread must be given to run the interrupted syscall again once it is
// resumed somewhere the kernel's own restart logic will not apply (a restored task): rax
// back to the syscall number, rip back over the 2-byte `syscall` instruction. A syscall
// that would have been restarted through restart_syscall(2) (nanosleep, poll, futex with
// a timeout) is run again with its original arguments, as the restore has no restart block.
user_regs_struct withSyscallRestarted(const user_regs_struct& regs);

}  // namespace crpipe::inject
