#include "collector/grab_fd.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "common/image_format.h"
#include "common/proc.h"

namespace crpipe::collector {

namespace {

// fdinfo of one fd in a single read: the kernel formats the whole (small) file at once,
// so a read that does not fill the buffer has everything. Files with long tails (epoll,
// inotify) fall back to reading until EOF.
Result<std::string> readFdInfo(int fdinfoDir, int fd) {
  char name[16];
  snprintf(name, sizeof(name), "%d", fd);
  UniqueFd f(::openat(fdinfoDir, name, O_RDONLY | O_CLOEXEC));
  if (!f.valid()) {
    int err = errno;
    return fail(Error::sys(err, std::string("open fdinfo/") + name));
  }
  char buf[4096];
  ssize_t n = ::read(f.get(), buf, sizeof(buf));
  if (n < 0) {
    int err = errno;
    return fail(Error::sys(err, std::string("read fdinfo/") + name));
  }
  std::string out(buf, static_cast<size_t>(n));
  if (static_cast<size_t>(n) < sizeof(buf)) {
    return out;
  }
  auto rest = readAll(f.get());
  if (!rest) {
    return fail(std::move(rest).error().context(std::string("fdinfo/") + name));
  }
  return out + *rest;
}

// The collector's fd table grows as duplicates arrive. While a second thread shares it,
// every growth waits for an RCU grace period (expand_fdtable() calls synchronize_rcu()
// when the table has more than one user): milliseconds each in a VM. So it is grown once,
// before the thread starts, to hold the duplicates to come. Best effort: where the limit
// does not allow it, the table grows as before.
void growFdTable(int anyFd, size_t more) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return;
  }
  UniqueFd lowest(::fcntl(anyFd, F_DUPFD_CLOEXEC, 0));
  if (!lowest.valid()) {
    return;
  }
  uint64_t want = static_cast<uint64_t>(lowest.get()) + 2 * more + 64;
  if (rl.rlim_cur != RLIM_INFINITY && want >= rl.rlim_cur) {
    want = rl.rlim_cur - 1;
  }
  UniqueFd high(::fcntl(anyFd, F_DUPFD_CLOEXEC, static_cast<int>(want)));
}

std::string whereFd(pid_t pid, int fd) {
  return "fd " + std::to_string(fd) + " of pid " + std::to_string(pid);
}

}  // namespace

Result<TaskProcDirs> openTaskProcDirs(pid_t pid) {
  TaskProcDirs d;
  const std::string base = "/proc/" + std::to_string(pid);
  d.fd.reset(::open((base + "/fd").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.fd.valid()) {
    return fail(Error::sys("open " + base + "/fd"));
  }
  d.fdinfo.reset(::open((base + "/fdinfo").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.fdinfo.valid()) {
    return fail(Error::sys("open " + base + "/fdinfo"));
  }
  return d;
}

Result<OpenFile> grabFd(int pidfd, const TaskProcDirs& dirs, pid_t pid, int fd,
                        const FdTableReader::Fd* known) {
  OpenFile f;
  f.pid = pid;
  f.fd = fd;
  // pidfd_getfd duplicates the very open file description (like SCM_RIGHTS), CLOEXEC.
  f.dup.reset(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, fd, 0)));
  if (!f.dup.valid()) {
    int err = errno;
    return fail(Error::sys(err, whereFd(pid, fd) + ": pidfd_getfd"));
  }
  if (known != nullptr && S_ISSOCK(known->mode)) {
    f.st.st_mode = known->mode;
    f.st.st_ino = known->info.ino;
    f.st.st_dev = known->dev;
  } else if (::fstat(f.dup.get(), &f.st) < 0) {
    int err = errno;
    return fail(Error::sys(err, whereFd(pid, fd) + ": fstat"));
  }
  if (S_ISSOCK(f.st.st_mode)) {
    // What the link would say; sockets are many, and the syscall is not needed.
    f.link = "socket:[" + std::to_string(f.st.st_ino) + "]";
  } else {
    char buf[4096];
    ssize_t n = ::readlinkat(dirs.fd.get(), std::to_string(fd).c_str(), buf, sizeof(buf));
    if (n < 0) {
      int err = errno;
    return fail(Error::sys(err, whereFd(pid, fd) + ": readlink"));
    }
    f.link.assign(buf, static_cast<size_t>(n));
  }
  if (known != nullptr) {
    f.fdinfo = known->info;
    return f;
  }
  auto info = readFdInfo(dirs.fdinfo.get(), fd);
  if (!info) {
    return fail(std::move(info).error().context(whereFd(pid, fd)));
  }
  auto parsed = parseFdInfo(*info);
  if (!parsed) {
    return fail(std::move(parsed).error().context(whereFd(pid, fd)));
  }
  f.fdinfo = *parsed;
  return f;
}

FdPrefetcher::FdPrefetcher(int pidfd, const TaskProcDirs& dirs, pid_t pid, std::vector<int> fds,
                           Ahead ahead, std::vector<FdTableReader::Fd> known)
    : fds_(std::move(fds)),
      known_(std::move(known)),
      ahead_(std::move(ahead)),
      pidfd_(pidfd),
      dirs_(&dirs),
      pid_(pid),
      slots_(fds_.size()),
      done_(std::make_unique<std::atomic<bool>[]>(fds_.size())) {
  growFdTable(pidfd, fds_.size());
  worker_ = std::jthread([this](std::stop_token stop) { run(std::move(stop)); });
}

void FdPrefetcher::fill(size_t i, std::unique_ptr<ReadAheadContext>& ctx) {
  const FdTableReader::Fd* known = i < known_.size() ? &known_[i] : nullptr;
  slots_[i].emplace(grabFd(pidfd_, *dirs_, pid_, fds_[i], known));
  if (ahead_ && *slots_[i]) {
    if (!ctx) {
      ctx = std::make_unique<ReadAheadContext>();
    }
    OpenFile& f = **slots_[i];
    f.table = known;
    ahead_(f, *ctx);
    f.table = nullptr;
  }
}

void FdPrefetcher::run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= fds_.size()) {
      return;
    }
    fill(i, workerCtx_);
    // Read before the slot is handed out: the taker may move it away at once.
    const bool failed = !*slots_[i];
    // Release: the slot is written before the flag that hands it out.
    done_[i].store(true, std::memory_order_release);
    done_[i].notify_one();
    if (failed) {
      return;  // the taker stops at this error; the fds after it are not needed
    }
  }
}

Result<OpenFile> FdPrefetcher::take(size_t i) {
  if (i >= fds_.size()) {
    return failMsg("fd prefetcher: no fd #" + std::to_string(i));
  }
  while (!done_[i].load(std::memory_order_acquire)) {
    // Not grabbed yet: rather than wait for the thread (a futex sleep and wake per fd cost
    // more than the work), the caller grabs the next fd no one took on yet (this one, or
    // one after it that the thread is not on) and looks again. With a kind reading ahead,
    // grabbing is the slower side; this way both cores share it.
    size_t j = next_.fetch_add(1, std::memory_order_relaxed);
    if (j < fds_.size()) {
      fill(j, takerCtx_);
      done_[j].store(true, std::memory_order_release);
      continue;
    }
    done_[i].wait(false, std::memory_order_acquire);  // the thread is on the last ones
  }
  Result<OpenFile> r = std::move(*slots_[i]);
  slots_[i].reset();
  return r;
}

}  // namespace crpipe::collector
