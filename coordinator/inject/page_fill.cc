#include "coordinator/inject/page_fill.h"

#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <span>
#include <thread>
#include <vector>

#include "common/vma.h"

namespace crpipe::inject {

namespace {

constexpr uint64_t kPage = 4096;
// Below this a thread costs more than it saves.
constexpr uint64_t kSplitFrom = 4ull << 20;

// A stretch of the task's memory and where its bytes start in the pages image.
struct Segment {
  uint64_t vaddr;
  size_t len;
};

// Writes `segs` from `data` on (the segments' bytes follow each other there), up to
// IOV_MAX segments per call.
Status writeSegments(pid_t pid, std::span<const Segment> segs, const char* data) {
  std::vector<iovec> remote;
  remote.reserve(std::min<size_t>(segs.size(), IOV_MAX));
  size_t offset = 0;
  size_t i = 0;
  while (i < segs.size()) {
    remote.clear();
    size_t want = 0;
    for (; i < segs.size() && remote.size() < IOV_MAX; ++i) {
      remote.push_back({reinterpret_cast<void*>(segs[i].vaddr), segs[i].len});
      want += segs[i].len;
    }
    size_t done = 0;
    size_t first = 0;
    while (done < want) {
      iovec local{const_cast<char*>(data) + offset + done, want - done};
      ssize_t n = ::process_vm_writev(pid, &local, 1, remote.data() + first,
                                      remote.size() - first, 0);
      if (n <= 0) {
        uint64_t at = reinterpret_cast<uint64_t>(remote[first].iov_base);
        return fail(Error::sys(n < 0 ? errno : EFAULT,
                               "process_vm_writev of pages at 0x" +
                                   hexRange(at, at + remote[first].iov_len)));
      }
      done += static_cast<size_t>(n);
      // Skip the runs written whole; shorten the one written in part.
      size_t left = static_cast<size_t>(n);
      while (left > 0 && first < remote.size()) {
        if (left >= remote[first].iov_len) {
          left -= remote[first].iov_len;
          ++first;
        } else {
          remote[first].iov_base = static_cast<char*>(remote[first].iov_base) + left;
          remote[first].iov_len -= left;
          left = 0;
        }
      }
    }
    offset += want;
  }
  return {};
}

}  // namespace

Status fillPages(pid_t pid, const PageRuns& runs, uint64_t* bytes, bool split) {
  std::vector<Segment> segs;
  segs.reserve(runs.entries.size() + 1);
  uint64_t total = 0;
  for (const auto& e : runs.entries) {
    segs.push_back({e.vaddr(), static_cast<size_t>(e.nr_pages() * kPage)});
    total += e.nr_pages() * kPage;
  }
  if (total > runs.pages.size()) {
    return failMsg("the pagemap names " + std::to_string(total) + " bytes of pages, the pages image has " +
                   std::to_string(runs.pages.size()));
  }
  const char* data = runs.pages.data();
  if (!split || total < kSplitFrom) {
    CRPIPE_TRY(writeSegments(pid, segs, data));
    *bytes += total;
    return {};
  }
  // The split: the first half's bytes, on a page boundary, inside segment `at`.
  const uint64_t half = total / 2 / kPage * kPage;
  size_t at = 0;
  uint64_t before = 0;
  while (before + segs[at].len <= half) {
    before += segs[at].len;
    ++at;
  }
  std::vector<Segment> second(segs.begin() + static_cast<std::ptrdiff_t>(at), segs.end());
  segs.resize(at + 1);
  const size_t cut = static_cast<size_t>(half - before);
  segs[at].len = cut;
  second.front().vaddr += cut;
  second.front().len -= cut;
  if (cut == 0) {
    segs.pop_back();
  }
  Status secondDone;
  std::thread helper([&]() { secondDone = writeSegments(pid, second, data + half); });
  Status firstDone = writeSegments(pid, segs, data);
  helper.join();
  CRPIPE_TRY(std::move(firstDone));
  CRPIPE_TRY(std::move(secondDone));
  *bytes += total;
  return {};
}

}  // namespace crpipe::inject
