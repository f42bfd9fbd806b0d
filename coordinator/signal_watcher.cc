#include "coordinator/signal_watcher.h"

#include <signal.h>

namespace crpipe {

struct SignalWatcher::Handle {
  uv_signal_t sig{};
  SignalWatcher* owner = nullptr;
};

SignalWatcher::SignalWatcher(uv_loop_t* loop, std::function<void(int)> onSignal)
    : onSignal_(std::move(onSignal)) {
  for (int signo : {SIGINT, SIGTERM, SIGHUP}) {
    auto* h = new Handle();
    h->owner = this;
    uv_signal_init(loop, &h->sig);
    uv_signal_start(
        &h->sig,
        [](uv_signal_t* s, int n) {
          auto* self = reinterpret_cast<Handle*>(s)->owner;
          if (self != nullptr && self->onSignal_) {
            self->onSignal_(n);
          }
        },
        signo);
    handles_.push_back(h);
  }
}

SignalWatcher::~SignalWatcher() { stop(); }

void SignalWatcher::stop() {
  for (Handle* h : handles_) {
    h->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&h->sig),
             [](uv_handle_t* hh) { delete reinterpret_cast<Handle*>(hh); });
  }
  handles_.clear();
}

}  // namespace crpipe
