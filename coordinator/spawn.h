#pragma once

#include <sys/types.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace crpipe {

// Where stage binaries are found: next to the running crpipe (/proc/self/exe) first, so
// a build tree or an install prefix uses its own stages, then $PATH.
Result<std::string> findStageBinary(const std::string& name);

// An fd the child gets: parentFd appears as childFd in the child. Fds 0-2 the spec does
// not mention are inherited from crpipe; no other fd reaches the child (all of crpipe's
// own are CLOEXEC).
struct ChildFd {
  int childFd;
  int parentFd;
};

// How a stage process ended.
struct StageExit {
  int64_t status = 0;
  int signal = 0;
  bool ok() const { return status == 0 && signal == 0; }
  std::string describe() const;
};

// One running stage binary under the loop. The uv handle lives on the heap and is freed
// in its close callback, so destroying this object while the loop still runs is safe. A
// stage still running when its owner goes away is sent `killSignalOnDestroy` first.
class StageProcess {
 public:
  using ExitFn = std::function<void(const StageExit&)>;

  static Result<std::unique_ptr<StageProcess>> spawn(uv_loop_t* loop, std::string name,
                                                     const std::string& path,
                                                     const std::vector<std::string>& args,
                                                     const std::vector<ChildFd>& fds,
                                                     ExitFn onExit);
  // Like spawn(), but the child gets the pid `pid` (clone3 with set_tid; root in the
  // initial pid namespace) and RLIMIT_NOFILE raised to its hard limit, so that fds can be
  // placed high. For the root restorer of a restore, which must carry the root's pid.
  // Watched through a pidfd on the loop and reaped with waitid(P_PIDFD).
  static Result<std::unique_ptr<StageProcess>> spawnWithPid(uv_loop_t* loop, std::string name,
                                                            const std::string& path,
                                                            const std::vector<std::string>& args,
                                                            const std::vector<ChildFd>& fds,
                                                            pid_t pid, ExitFn onExit);
  ~StageProcess();
  StageProcess(const StageProcess&) = delete;
  StageProcess& operator=(const StageProcess&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const;
  bool exited() const { return exited_; }
  const StageExit& exit() const { return exit_; }
  void signal(int sig);
  // Stops watching a child started with spawnWithPid and leaves it running (a restored
  // tree that `restore -d` leaves behind): it is no longer killed when this goes away.
  void release();

 private:
  struct Handle;
  struct PidfdHandle;
  StageProcess() = default;
  static void onExitCb(uv_process_t* p, int64_t status, int sig);
  static void onPidfd(uv_poll_t* p, int status, int events);
  void exited(const StageExit& e);
  void closePidfdHandle();
  pid_t pidfdPid() const;
  void pidfdSignal(int sig);

  std::string name_;
  Handle* handle_ = nullptr;
  PidfdHandle* pidfdHandle_ = nullptr;
  ExitFn onExit_;
  bool exited_ = false;
  StageExit exit_;
};

}  // namespace crpipe
