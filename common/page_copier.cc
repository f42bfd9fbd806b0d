#include "common/page_copier.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "common/proc.h"
#include "common/ptrace/remote_mem.h"

namespace crpipe {

namespace {

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};

}  // namespace

PageCopier::PageCopier(unsigned threads) {
  for (unsigned i = 0; i < std::max(threads, 1u); ++i) {
    workers_.emplace_back([this](std::stop_token stop) { work(stop); });
  }
}

PageCopier::~PageCopier() {
  {
    // Dropped, not run: the dump failed, and the tree may be running again by now.
    std::lock_guard lock(mu_);
    jobs_.clear();
  }
  for (auto& w : workers_) {
    w.request_stop();
  }
  wake_.notify_all();
  workers_.clear();  // joins
}

Status PageCopier::add(pid_t pid, const std::vector<iovec>& ranges, int fd, uint64_t offset,
                       const std::string& file, const std::string& where) {
  std::vector<Job> jobs;
  Job job;
  auto close = [&]() {
    if (job.len > 0) {
      jobs.push_back(std::move(job));
    }
    job = Job{};
    job.pid = pid;
    job.fd = fd;
    job.offset = offset;
    job.file = file;
    job.where = where;
  };
  close();
  for (const iovec& r : ranges) {
    uint64_t addr = reinterpret_cast<uint64_t>(r.iov_base);
    size_t left = r.iov_len;
    while (left > 0) {
      if (job.len == kJobBytes || job.ranges.size() == IOV_MAX) {
        close();
      }
      size_t take = std::min(left, kJobBytes - job.len);
      job.ranges.push_back({reinterpret_cast<void*>(addr), take});
      job.len += take;
      offset += take;
      addr += take;
      left -= take;
    }
  }
  close();
  std::lock_guard lock(mu_);
  if (failed_) {
    return fail(*failed_);
  }
  for (auto& j : jobs) {
    jobs_.push_back(std::move(j));
  }
  pids_.insert(pid);
  wake_.notify_all();
  return {};
}

Status PageCopier::wait() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return (jobs_.empty() && running_ == 0) || failed_.has_value(); });
  if (failed_) {
    return fail(*failed_);
  }
  return {};
}

Status PageCopier::checkStillFrozen() {
  std::set<pid_t> pids;
  {
    std::lock_guard lock(mu_);
    pids = pids_;
  }
  for (pid_t pid : pids) {
    auto text = readProcFile("/proc/" + std::to_string(pid) + "/status");
    char state = '?';
    long tracer = 0;
    if (text) {
      auto st = procStatusField(*text, "State");
      state = st && !st->empty() ? st->front() : '?';
      auto tr = procStatusField(*text, "TracerPid");
      tracer = tr ? std::strtol(std::string(*tr).c_str(), nullptr, 10) : 0;
    }
    if (state != 't' || tracer == 0) {
      return failMsg("pid " + std::to_string(pid) + " was released (" +
                     (text ? std::string("state ") + state + ", tracer " + std::to_string(tracer)
                           : "gone") +
                     ") before its pages were all read: the collector that froze it is gone "
                     "and its memory may have changed; nothing was written");
    }
  }
  return {};
}

void PageCopier::work(std::stop_token stop) {
  // Page-aligned: the kernel copies whole pages into it.
  std::unique_ptr<char, FreeDeleter> buf(static_cast<char*>(std::aligned_alloc(4096, kJobBytes)));
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      // (wait() returns the predicate even once a stop is asked for: test both.)
      if (!wake_.wait(lock, stop, [this] { return !jobs_.empty(); }) ||
          stop.stop_requested()) {
        return;
      }
      // Two writers of one file take turns on its inode lock (tmpfs writes hold it for the
      // whole copy): a job of a file no other worker is on goes first. 512 MiB in 1 MiB
      // jobs, two threads: 2.6 GB/s into one file, 4 GB/s into two.
      auto pick = jobs_.begin();
      for (auto it = jobs_.begin(); it != jobs_.end() && it - jobs_.begin() < kLookAhead; ++it) {
        if (std::find(busyFds_.begin(), busyFds_.end(), it->fd) == busyFds_.end()) {
          pick = it;
          break;
        }
      }
      job = std::move(*pick);
      jobs_.erase(pick);
      ++running_;
      busyFds_.push_back(job.fd);
    }
    Status st = buf ? run(job, buf.get()) : failMsg("no memory for a page copy buffer");
    std::lock_guard lock(mu_);
    --running_;
    busyFds_.erase(std::find(busyFds_.begin(), busyFds_.end(), job.fd));
    if (!st && !failed_) {
      failed_ = std::move(st).error();
      jobs_.clear();  // what is left is not needed: the dump fails
    }
    idle_.notify_all();
  }
}

Status PageCopier::run(const Job& job, char* buf) {
  auto got = inject::readRemoteV(job.pid, job.ranges, buf, job.len);
  if (!got) {
    return fail(std::move(got).error().context(job.where + ": pages for " + job.file));
  }
  if (*got != job.len) {
    return failMsg(job.where + ": " + inject::shortReadMessage(job.pid, job.ranges, *got) +
                   " for " + job.file);
  }
  size_t done = 0;
  while (done < job.len) {
    ssize_t n = ::pwrite(job.fd, buf + done, job.len - done,
                         static_cast<off_t>(job.offset + done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return fail(Error::sys(n < 0 ? errno : EIO,
                             "write " + job.file + " at offset " + std::to_string(job.offset + done)));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace crpipe
