#pragma once

#include <uv.h>

#include <functional>
#include <vector>

namespace crpipe {

// Watches SIGINT, SIGTERM and SIGHUP on the loop while it exists. The handles are freed
// in their close callbacks.
class SignalWatcher {
 public:
  SignalWatcher(uv_loop_t* loop, std::function<void(int)> onSignal);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  // Stops watching (the loop can end); safe to call twice.
  void stop();

 private:
  struct Handle;
  std::vector<Handle*> handles_;
  std::function<void(int)> onSignal_;
};

}  // namespace crpipe
