#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "coordinator/control_channel.h"
#include "coordinator/signal_watcher.h"
#include "coordinator/spawn.h"
#include "coordinator/uv_loop.h"

namespace crpipe {

// One stage process of a session and what the session learned about it.
struct Stage {
  std::string name;  // "collector", "serializer", "restorer 1234"
  std::unique_ptr<StageProcess> process;     // null for a stage crpipe did not start
                                             // (a restorer forked by another restorer)
  std::unique_ptr<ControlChannel> control;  // null if the stage has none
  std::optional<std::string> failure;       // the first Failure message it sent
  bool failureUpstream = false;             // that Failure said the stage before caused it
  std::optional<std::string> channelError;  // its control channel broke
  bool controlDone = true;                  // its channel reached EOF (or it has none)
};

// What a command does when something happens to its stages. Dump is one policy; the
// restore of issues 4 and 5 is another, driving many restorers through phase barriers
// over the same session. Handlers run on the loop and must not destroy stages.
class SessionEvents {
 public:
  virtual ~SessionEvents() = default;
  virtual void onMessage(Stage& stage, proto::Message::Reader msg) = 0;
  virtual void onExit(Stage& stage) = 0;
  virtual void onSignal(int signo) = 0;
  // The stage's control channel ended (EOF or error, already recorded on the stage).
  virtual void onChannelClosed(Stage&) {}
};

// The stages of one command on one libuv loop, joined to crpipe by their control
// channels. Failure messages are recorded on the stage before the handler sees them.
class Session {
 public:
  explicit Session(SessionEvents& events);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts a stage binary; `control` is crpipe's end of its control channel (or invalid).
  // `fds` already name the child's fds (the other end of `control` among them).
  Result<Stage*> start(const std::string& name, const std::string& binary,
                       const std::vector<std::string>& args, const std::vector<ChildFd>& fds,
                       UniqueFd control);

  // Like start(), with the process started with a chosen pid (StageProcess::spawnWithPid).
  Result<Stage*> startWithPid(const std::string& name, const std::string& binary,
                              const std::vector<std::string>& args,
                              const std::vector<ChildFd>& fds, UniqueFd control, pid_t pid);

  // A stage whose process another stage starts (the restorers of non-root tasks): only
  // its control channel is crpipe's. It counts as finished when the channel ends.
  Result<Stage*> attach(const std::string& name, UniqueFd control);

  // Runs until every stage has exited and every control channel has ended.
  void run();

  uv_loop_t* loop() { return loop_.get(); }
  const std::vector<std::unique_ptr<Stage>>& stages() const { return stages_; }

 private:
  void maybeFinished();
  Status openControl(Stage* s, UniqueFd control);
  std::function<void(const StageExit&)> onExitOf(Stage* s);
  Result<Stage*> adopt(std::unique_ptr<Stage> stage, Result<std::unique_ptr<StageProcess>> proc,
                       UniqueFd control);

  // Declared first so that it is destroyed last, after every handle owner.
  UvLoop loop_;
  SessionEvents& events_;
  std::unique_ptr<SignalWatcher> signals_;
  std::vector<std::unique_ptr<Stage>> stages_;
};

// A SOCK_STREAM socketpair with CLOEXEC on both ends.
Result<std::pair<UniqueFd, UniqueFd>> makeSocketPair();

}  // namespace crpipe
