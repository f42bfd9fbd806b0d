#include "common/page_prefaulter.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace crpipe {

namespace {
// One madvise a step: small enough that finish() waits little, large enough that the
// call's own cost does not count.
constexpr size_t kStep = 1 << 20;
}  // namespace

PagePrefaulter::~PagePrefaulter() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
    cancel_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void PagePrefaulter::start(char* begin, char* end) {
  std::lock_guard<std::mutex> lock(m_);
  if (unsupported_ || end <= begin) {
    return;
  }
  // madvise takes whole pages; the pages holding begin and end are mapped (see the header).
  constexpr uintptr_t kPage = 4096;
  begin_ = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(begin) & ~(kPage - 1));
  end_ = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(end) + kPage - 1) & ~(kPage - 1));
  pending_ = true;
  cancel_ = false;
  if (!thread_.joinable()) {
    thread_ = std::thread([this] { run(); });
  }
  cv_.notify_all();
}

void PagePrefaulter::finish() {
  std::unique_lock<std::mutex> lock(m_);
  cancel_ = true;
  pending_ = false;
  cv_.wait(lock, [this] { return !busy_; });
}

void PagePrefaulter::run() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || pending_; });
    if (stop_) {
      return;
    }
    char* begin = begin_;
    char* end = end_;
    pending_ = false;
    busy_ = true;
    lock.unlock();
    bool refused = false;
    // From the end down: the caller fills from the start up, so the two meet once.
    for (char* p = end; p > begin && !cancel_.load(std::memory_order_relaxed);) {
      char* q = p - std::min<size_t>(static_cast<size_t>(p - begin), kStep);
      if (::madvise(q, static_cast<size_t>(p - q), MADV_POPULATE_WRITE) < 0 &&
          errno == EINVAL) {
        refused = true;  // no MADV_POPULATE_WRITE here: the caller's copy faults alone
        break;
      }
      p = q;
    }
    lock.lock();
    busy_ = false;
    unsupported_ = unsupported_ || refused;
    cv_.notify_all();
  }
}

}  // namespace crpipe
