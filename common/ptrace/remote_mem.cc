#include "common/ptrace/remote_mem.h"

#include <climits>
#include <cstdio>

#include "common/vma.h"

namespace crpipe::inject {

Status readRemote(pid_t pid, uint64_t addr, void* buf, size_t len) {
  iovec local{buf, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (n < 0) {
    return fail(Error::sys("pid " + std::to_string(pid) + ": process_vm_readv " +
                           std::to_string(len) + " bytes at " + hexAddr(addr)));
  }
  if (static_cast<size_t>(n) != len) {
    return failMsg("pid " + std::to_string(pid) + ": process_vm_readv stopped at " +
                   hexAddr(addr + static_cast<uint64_t>(n)));
  }
  return {};
}

Status writeRemote(pid_t pid, uint64_t addr, const void* buf, size_t len) {
  iovec local{const_cast<void*>(buf), len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n < 0) {
    return fail(Error::sys("pid " + std::to_string(pid) + ": process_vm_writev " +
                           std::to_string(len) + " bytes at " + hexAddr(addr)));
  }
  if (static_cast<size_t>(n) != len) {
    return failMsg("pid " + std::to_string(pid) + ": process_vm_writev stopped at " +
                   hexAddr(addr + static_cast<uint64_t>(n)));
  }
  return {};
}

Result<size_t> readRemoteV(pid_t pid, std::span<const iovec> remote, void* buf, size_t len) {
  size_t done = 0;
  auto* out = static_cast<char*>(buf);
  while (!remote.empty()) {
    size_t count = std::min<size_t>(remote.size(), IOV_MAX);
    size_t want = 0;
    for (size_t i = 0; i < count; ++i) {
      want += remote[i].iov_len;
    }
    if (done + want > len) {
      return failMsg("readRemoteV: local buffer too small");
    }
    iovec local{out + done, want};
    ssize_t n = ::process_vm_readv(pid, &local, 1, remote.data(), count, 0);
    if (n < 0) {
      if (errno == EFAULT && done > 0) {
        return done;  // the first range of this call failed: report where
      }
      if (errno == EFAULT) {
        return size_t{0};
      }
      return fail(Error::sys("pid " + std::to_string(pid) + ": process_vm_readv"));
    }
    done += static_cast<size_t>(n);
    if (static_cast<size_t>(n) != want) {
      return done;
    }
    remote = remote.subspan(count);
  }
  return done;
}

std::string shortReadMessage(pid_t pid, std::span<const iovec> remote, size_t got) {
  uint64_t addr = 0;
  for (const auto& r : remote) {
    if (got < r.iov_len) {
      addr = reinterpret_cast<uint64_t>(r.iov_base) + got;
      break;
    }
    got -= r.iov_len;
  }
  return "pid " + std::to_string(pid) + ": cannot read the page at " + hexAddr(addr) +
         " (process_vm_readv)";
}

}  // namespace crpipe::inject
