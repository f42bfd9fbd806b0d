#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"

namespace crpipe {

// Copies memory of frozen tasks into image files (the serializer's side of ImagePageRefs):
// each job reads ranges of one task with process_vm_readv into a buffer of its worker and
// writes them with pwrite at the file offset the job was given. Jobs run on a few threads
// at once and in any order; their file ranges never overlap. wait() returns the first
// failure, which names the task, the address and the file.
class PageCopier {
 public:
  // One job's most: a worker's buffer.
  static constexpr size_t kJobBytes = 1 << 20;

  explicit PageCopier(unsigned threads);
  ~PageCopier();  // drops the jobs not yet started and joins the workers
  PageCopier(const PageCopier&) = delete;
  PageCopier& operator=(const PageCopier&) = delete;

  // Queues the copy of `ranges` of `pid` (their lengths add up to the bytes written) to
  // `fd` from `offset` on. Split into jobs of at most kJobBytes. `file` and `where` (the
  // stream position of the message) are for errors. Fails at once if an earlier job failed.
  Status add(pid_t pid, const std::vector<iovec>& ranges, int fd, uint64_t offset,
             const std::string& file, const std::string& where);
  // Waits until every job queued so far ran.
  Status wait();
  // After wait(): every task whose pages were read is still in a ptrace stop with a tracer
  // (/proc/PID/status: State t, TracerPid not 0). The collector holds the tree frozen until
  // the images are committed, so a task still frozen now was frozen during the whole copy;
  // one that is not was released (its collector is gone) and may have changed meanwhile.
  Status checkStillFrozen();

 private:
  struct Job {
    pid_t pid = 0;
    std::vector<iovec> ranges;
    size_t len = 0;
    int fd = -1;
    uint64_t offset = 0;
    std::string file, where;
  };
  void work(std::stop_token stop);
  Status run(const Job& job, char* buf);

  std::mutex mu_;
  std::condition_variable_any wake_;  // workers: a job, or stop
  std::condition_variable idle_;      // wait(): nothing queued or running
  std::deque<Job> jobs_;
  std::set<pid_t> pids_;  // every task pages were read from
  std::vector<int> busyFds_;  // the files of the jobs running, one entry per job
  static constexpr long kLookAhead = 64;
  size_t running_ = 0;
  std::optional<Error> failed_;
  std::vector<std::jthread> workers_;  // last: joined first
};

}  // namespace crpipe
