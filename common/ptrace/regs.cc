#include "common/ptrace/regs.h"

#include <cpuid.h>
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include <array>

namespace crpipe::inject {

namespace {

std::string tidCtx(pid_t tid) { return "tid " + std::to_string(tid); }

// Large enough for every XSAVE layout of today's CPUs (AMX tile data makes it ~11 KiB);
// PTRACE_GETREGSET shortens iov_len to what the kernel has.
constexpr size_t kXstateMax = 64 * 1024;

}  // namespace

Result<user_regs_struct> getRegs(pid_t tid) {
  user_regs_struct r{};
  iovec iov{&r, sizeof(r)};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_GETREGSET NT_PRSTATUS"));
  }
  return r;
}

Status setRegs(pid_t tid, const user_regs_struct& regs) {
  user_regs_struct r = regs;
  iovec iov{&r, sizeof(r)};
  if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_PRSTATUS), &iov) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_SETREGSET NT_PRSTATUS"));
  }
  return {};
}

Result<std::string> getXstate(pid_t tid) {
  std::string buf(kXstateMax, '\0');
  iovec iov{buf.data(), buf.size()};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0) {
    if (errno == ENODEV || errno == EINVAL) {
      return std::string();  // no XSAVE on this CPU
    }
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_GETREGSET NT_X86_XSTATE"));
  }
  buf.resize(iov.iov_len);
  return buf;
}

Status setXstate(pid_t tid, const std::string& xstate) {
  std::string buf = xstate;
  iovec iov{buf.data(), buf.size()};
  if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_SETREGSET NT_X86_XSTATE"));
  }
  return {};
}

Result<user_fpregs_struct> getFpregs(pid_t tid) {
  user_fpregs_struct f{};
  iovec iov{&f, sizeof(f)};
  if (::ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(NT_PRFPREG), &iov) < 0) {
    return fail(Error::sys(tidCtx(tid) + ": PTRACE_GETREGSET NT_PRFPREG"));
  }
  return f;
}

namespace {

XstateComponent readXstateComponent(unsigned index) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 0xD) {
    return {0, 0};
  }
  // Sub-leaf 0: the supported component bitmap (eax low 32 bits).
  __cpuid_count(0xD, 0, eax, ebx, ecx, edx);
  if (index >= 32 || (eax & (1u << index)) == 0) {
    return {0, 0};
  }
  // Sub-leaf i: eax = size, ebx = offset in the standard format.
  __cpuid_count(0xD, index, eax, ebx, ecx, edx);
  return {ebx, eax};
}

}  // namespace

XstateComponent xstateComponent(unsigned index) {
  // CPUID exits to the hypervisor in a VM (tens of us); the layout never changes, so each
  // component is asked once per process (restoring 64 tasks asked it ~1,300 times).
  static const auto table = [] {
    std::array<XstateComponent, 32> t{};
    for (unsigned i = 0; i < t.size(); ++i) {
      t[i] = readXstateComponent(i);
    }
    return t;
  }();
  return index < table.size() ? table[index] : XstateComponent{0, 0};
}

bool interruptedRestartable(const user_regs_struct& regs) {
  if (static_cast<long>(regs.orig_rax) < 0) {
    return false;
  }
  // The kernel compares the low 32 bits sign-extended (syscall_get_error()).
  long err = -static_cast<long>(static_cast<int>(regs.rax));
  return err == kErestartSys || err == kErestartNoIntr || err == kErestartNoHand ||
         err == kErestartRestartBlock;
}

user_regs_struct withSyscallRestarted(const user_regs_struct& regs) {
  user_regs_struct r = regs;
  if (interruptedRestartable(regs)) {
    r.rax = regs.orig_rax;
    r.rip -= 2;
  }
  return r;
}

}  // namespace crpipe::inject
