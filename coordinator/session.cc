#include "coordinator/session.h"

#include <sys/socket.h>

namespace crpipe {

Result<std::pair<UniqueFd, UniqueFd>> makeSocketPair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    return failSys("socketpair");
  }
  return std::make_pair(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

Session::Session(SessionEvents& events) : events_(events) {
  signals_ = std::make_unique<SignalWatcher>(loop_.get(), [this](int s) { events_.onSignal(s); });
}

Session::~Session() {
  // Stages first (their handles close), then the signal handles; the loop goes last.
  stages_.clear();
  signals_.reset();
}

Result<Stage*> Session::start(const std::string& name, const std::string& binary,
                              const std::vector<std::string>& args,
                              const std::vector<ChildFd>& fds, UniqueFd control) {
  auto stage = std::make_unique<Stage>();
  Stage* s = stage.get();
  s->name = name;
  auto proc = StageProcess::spawn(loop_.get(), name, binary, args, fds, onExitOf(s));
  return adopt(std::move(stage), std::move(proc), std::move(control));
}

Result<Stage*> Session::startWithPid(const std::string& name, const std::string& binary,
                                     const std::vector<std::string>& args,
                                     const std::vector<ChildFd>& fds, UniqueFd control,
                                     pid_t pid) {
  auto stage = std::make_unique<Stage>();
  Stage* s = stage.get();
  s->name = name;
  auto proc = StageProcess::spawnWithPid(loop_.get(), name, binary, args, fds, pid, onExitOf(s));
  return adopt(std::move(stage), std::move(proc), std::move(control));
}

// What a started stage's exit does: tell the policy, then see whether all is done.
std::function<void(const StageExit&)> Session::onExitOf(Stage* s) {
  return [this, s](const StageExit&) {
    events_.onExit(*s);
    maybeFinished();
  };
}

// A stage whose process started (or failed to): keep it, with its control channel.
Result<Stage*> Session::adopt(std::unique_ptr<Stage> stage,
                              Result<std::unique_ptr<StageProcess>> proc, UniqueFd control) {
  if (!proc) {
    return fail(std::move(proc).error());
  }
  Stage* s = stage.get();
  s->process = std::move(*proc);
  CRPIPE_TRY(openControl(s, std::move(control)));
  stages_.push_back(std::move(stage));
  return s;
}

Result<Stage*> Session::attach(const std::string& name, UniqueFd control) {
  auto stage = std::make_unique<Stage>();
  Stage* s = stage.get();
  s->name = name;
  CRPIPE_TRY(openControl(s, std::move(control)));
  stages_.push_back(std::move(stage));
  return s;
}

Status Session::openControl(Stage* s, UniqueFd control) {
  if (!control.valid()) {
    return {};
  }
  ControlChannel::Callbacks cb;
  cb.onMessage = [this, s](proto::Message::Reader m) {
    if (m.isFailure() && !s->failure) {
      s->failure = std::string(m.getFailure().getMessage().cStr());
      s->failureUpstream = m.getFailure().getUpstream();
    }
    events_.onMessage(*s, m);
  };
  cb.onClosed = [this, s](const Error* err) {
    s->controlDone = true;
    if (err != nullptr) {
      s->channelError = err->str();
    }
    events_.onChannelClosed(*s);
    maybeFinished();
  };
  auto ch = ControlChannel::open(loop_.get(), std::move(control), s->name + " control channel",
                                 std::move(cb));
  if (!ch) {
    return fail(std::move(ch).error());
  }
  s->control = std::move(*ch);
  s->controlDone = false;
  return {};
}

void Session::maybeFinished() {
  for (const auto& s : stages_) {
    if ((s->process != nullptr && !s->process->exited()) || !s->controlDone) {
      return;
    }
  }
  // Nothing will happen any more: let the loop end.
  for (const auto& s : stages_) {
    if (s->control) {
      s->control->close();
    }
  }
  signals_->stop();
}

void Session::run() {
  if (stages_.empty()) {
    signals_->stop();
  }
  loop_.run();
}

}  // namespace crpipe
