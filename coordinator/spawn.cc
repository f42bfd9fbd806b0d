#include "coordinator/spawn.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "coordinator/uv_loop.h"

namespace crpipe {

namespace {

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

}  // namespace

Result<std::string> findStageBinary(const std::string& name) {
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::vector<std::string> tried;
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    // Next to crpipe (an install prefix), then the build tree's layout
    // (build/coordinator/crpipe next to build/serializer/crpipe-serializer).
    for (const std::string& cand :
         {dir + "/" + name, dir + "/../" + name.substr(name.find('-') + 1) + "/" + name}) {
      if (executable(cand)) {
        return cand;
      }
      tried.push_back(cand);
    }
  }
  const char* path = std::getenv("PATH");
  std::string p = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) {
      end = p.size();
    }
    std::string dir = p.substr(start, end - start);
    if (!dir.empty() && executable(dir + "/" + name)) {
      return dir + "/" + name;
    }
    start = end + 1;
  }
  std::string where = tried.empty() ? "" : tried.front() + ", ";
  return failMsg("cannot find stage binary " + name + " (looked at " + where + "then $PATH)");
}

std::string StageExit::describe() const {
  if (signal != 0) {
    return std::string("killed by signal ") + strsignal(signal);
  }
  return "exited with status " + std::to_string(status);
}

struct StageProcess::Handle {
  uv_process_t proc{};
  StageProcess* owner = nullptr;
};

Result<std::unique_ptr<StageProcess>> StageProcess::spawn(uv_loop_t* loop, std::string name,
                                                          const std::string& path,
                                                          const std::vector<std::string>& args,
                                                          const std::vector<ChildFd>& fds,
                                                          ExitFn onExit) {
  std::unique_ptr<StageProcess> sp(new StageProcess());
  sp->name_ = std::move(name);
  sp->onExit_ = std::move(onExit);

  std::vector<char*> argv;
  std::string arg0 = path;
  argv.push_back(arg0.data());
  std::vector<std::string> copies(args);
  for (auto& a : copies) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);

  int count = 3;
  for (const auto& f : fds) {
    count = std::max(count, f.childFd + 1);
  }
  std::vector<uv_stdio_container_t> stdio(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    if (i < 3) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else {
      stdio[i].flags = UV_IGNORE;
    }
  }
  for (const auto& f : fds) {
    stdio[static_cast<size_t>(f.childFd)].flags = UV_INHERIT_FD;
    stdio[static_cast<size_t>(f.childFd)].data.fd = f.parentFd;
  }

  uv_process_options_t opts{};
  opts.file = path.c_str();
  opts.args = argv.data();
  opts.exit_cb = &StageProcess::onExitCb;
  opts.stdio_count = count;
  opts.stdio = stdio.data();

  auto* h = new Handle();
  h->owner = sp.get();
  int rc = uv_spawn(loop, &h->proc, &opts);
  if (rc < 0) {
    // uv_spawn leaves an initialised handle behind even on failure; it must be closed.
    uv_close(reinterpret_cast<uv_handle_t*>(&h->proc),
             [](uv_handle_t* hh) { delete reinterpret_cast<Handle*>(hh); });
    return fail(uvError(rc, "start " + sp->name_ + " (" + path + ")"));
  }
  sp->handle_ = h;
  return sp;
}

void StageProcess::onExitCb(uv_process_t* p, int64_t status, int sig) {
  auto* h = reinterpret_cast<Handle*>(p);
  StageProcess* self = h->owner;
  if (self == nullptr) {
    return;
  }
  self->exited(StageExit{status, sig});
}

void StageProcess::exited(const StageExit& e) {
  exited_ = true;
  exit_ = e;
  if (onExit_) {
    onExit_(exit_);
  }
}

pid_t StageProcess::pid() const {
  if (pidfdHandle_ != nullptr) {
    return pidfdPid();
  }
  return handle_ != nullptr ? handle_->proc.pid : -1;
}

void StageProcess::signal(int sig) {
  if (pidfdHandle_ != nullptr && !exited_) {
    pidfdSignal(sig);
    return;
  }
  if (handle_ != nullptr && !exited_) {
    uv_process_kill(&handle_->proc, sig);
  }
}

StageProcess::~StageProcess() {
  if (pidfdHandle_ != nullptr) {
    closePidfdHandle();
  }
  if (handle_ == nullptr) {
    return;
  }
  if (!exited_) {
    uv_process_kill(&handle_->proc, SIGKILL);
  }
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->proc),
           [](uv_handle_t* hh) { delete reinterpret_cast<Handle*>(hh); });
}

}  // namespace crpipe
