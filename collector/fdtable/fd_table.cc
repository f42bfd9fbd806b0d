#include "collector/fdtable/fd_table.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "collector/fdtable/fd_table_abi.h"
#include "collector/fdtable/fd_table_lskel.h"
#include "collector/bpf_util.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

namespace {

struct SkelDestroyer {
  void operator()(crpipe_fdt* s) const { crpipe_fdt_destroy(s); }
};

}  // namespace

struct FdTableReader::Impl {
  std::unique_ptr<crpipe_fdt, SkelDestroyer> skel;
  int progFd = -1;
};

FdTableReader::FdTableReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FdTableReader::~FdTableReader() = default;

Result<std::unique_ptr<FdTableReader>> FdTableReader::load() {
  if (::access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return failSys("the kernel has no BTF (/sys/kernel/btf/vmlinux)");
  }
  auto impl = std::make_unique<Impl>();
  errno = 0;
  impl->skel.reset(crpipe_fdt_load());
  if (!impl->skel) {
    int err = errno;
    return fail(Error::sys(err, (err == EPERM || err == EACCES)
                                    ? "loading a BPF iterator needs CAP_BPF and CAP_PERFMON"
                                    : "the kernel refused the fd-table iterator (Linux >= 6.1 "
                                      "with BTF)"));
  }
  impl->progFd = crpipe_fdt_prog_fd(impl->skel.get());
  // The pid filter of a task iterator came in Linux 6.1; before, every attach fails (E2BIG).
  // Tried once here on the collector itself, so that such a kernel uses /proc from the
  // start instead of failing for every large table.
  UniqueFd trial(attachTaskIter(impl->progFd, ::getpid()));
  if (!trial.valid()) {
    return failSys("the kernel has no pid filter for task iterators (Linux >= 6.1)");
  }
  return std::unique_ptr<FdTableReader>(new FdTableReader(std::move(impl)));
}

Result<std::vector<FdTableReader::Fd>> FdTableReader::read(pid_t pid, int pidfd) const {
  UniqueFd link(attachTaskIter(impl_->progFd, pid));
  if (!link.valid()) {
    return failSys("cannot attach the fd-table iterator to pid " + std::to_string(pid));
  }
  std::string raw;
  CRPIPE_TRY_CTX(readIter(link.get(), raw),
                 "fd table of pid " + std::to_string(pid));
  // Records never straddle: the seq file hands out whole writes, and a unix socket's
  // options come in the same write as its fd's record.
  std::vector<Fd> out;
  out.reserve(raw.size() / sizeof(crp_fdt_rec));
  const std::string where = "the fd-table iterator of pid " + std::to_string(pid);
  for (size_t at = 0; at < raw.size();) {
    crp_fdt_rec r;
    if (raw.size() - at < sizeof(r)) {
      return failMsg(where + " ended mid-record, at byte " + std::to_string(at));
    }
    std::memcpy(&r, raw.data() + at, sizeof(r));
    at += sizeof(r);
    Fd f;
    f.fd = static_cast<int>(r.fd);
    // What fdinfo prints: f_flags with O_CLOEXEC from the fd table.
    f.info.flags = r.flags | (r.cloexec != 0 ? O_CLOEXEC : 0);
    f.info.pos = r.pos;
    f.info.mntId = r.mnt_id;
    f.info.ino = r.ino;
    f.mode = r.mode;
    // The kernel's dev_t is MAJOR << 20 | MINOR; stat(2) encodes it for user space.
    f.dev = makedev(r.dev >> 20, r.dev & 0xfffff);
    f.ownerPid = (r.bits & CRP_FDT_OWNER_PID) != 0;
    f.sole = (r.bits & CRP_FDT_SOLE) != 0;
    f.ownerPidType = r.own_pid_type;
    f.ownerSignum = r.own_signum;
    if ((r.bits & CRP_FDT_SOCKET) != 0) {
      f.family = static_cast<int>(r.sk_family);
      f.state = static_cast<int>(r.sk_state);
    }
    if ((r.bits & CRP_FDT_USK) != 0) {
      crp_fast_usk u;
      if (raw.size() - at < sizeof(u)) {
        return failMsg(where + " ended inside the options of fd " + std::to_string(r.fd));
      }
      std::memcpy(&u, raw.data() + at, sizeof(u));
      at += sizeof(u);
      if (u.type != CRP_FAST_USK || u.size != sizeof(u) || u.ino != static_cast<uint32_t>(r.ino)) {
        return failMsg(where + ": fd " + std::to_string(r.fd) +
                       " has a malformed options record");
      }
      f.usk = u;
      if ((r.bits & CRP_FDT_QCOUNT) != 0) {
        f.queuedSkbs = u.nskbs;
        f.queuedBytes = u.qbytes;
        if ((r.bits & CRP_FDT_QPLAIN) != 0) {
          ucred c{};
          c.pid = static_cast<pid_t>(r.q_pid);
          c.uid = r.q_uid;
          c.gid = r.q_gid;
          f.queuedFrom = c;
        }
      }
    }
    out.push_back(std::move(f));
  }
  // An iterator over a pid with no task walks nothing: tell that from an empty table (by
  // the pidfd, which no reused pid can answer for).
  if (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0 && errno == ESRCH) {
    return failMsg("fd table of pid " + std::to_string(pid) + ": the process is gone");
  }
  return out;
}

}  // namespace crpipe::collector
