#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace crpipe {

// Faults in, on a second thread, the pages of a mapped window that this thread is about to
// fill (a pages image being received). Fresh pages cost far more than the copy into them
// (allocation and zeroing; in a VM often the host's own fault as well), and on their own a
// writer's copies pay that cost one page at a time on one CPU. The helper walks the window
// from its end down while the caller fills it from its start up, so the two CPUs share the
// faults and the caller's copy meets pages already there. Correctness never depends on it:
// populating a page that is already there changes nothing.
class PagePrefaulter {
 public:
  PagePrefaulter() = default;
  ~PagePrefaulter();
  PagePrefaulter(const PagePrefaulter&) = delete;
  PagePrefaulter& operator=(const PagePrefaulter&) = delete;

  // Starts faulting in [begin, end) (writable, shared or private mapping): every page that
  // holds a byte of it must be mapped, and stay mapped until finish() returns.
  void start(char* begin, char* end);
  // The caller is done with the window: the helper stops at its next step. Returns once
  // it touches nothing any more.
  void finish();

 private:
  void run();

  std::mutex m_;
  std::condition_variable cv_;
  char* begin_ = nullptr;
  char* end_ = nullptr;
  bool pending_ = false;   // a window waits for the helper
  bool busy_ = false;      // the helper is in a window
  bool stop_ = false;
  bool unsupported_ = false;  // MADV_POPULATE_WRITE refused (kernel before 5.14)
  std::atomic<bool> cancel_{false};
  std::thread thread_;     // started at the first window
};

}  // namespace crpipe
