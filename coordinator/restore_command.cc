#include "coordinator/restore_command.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <set>

#include "common/restore_phase.h"
#include "common/stage_stream.h"
#include "coordinator/inject/tree_injector.h"
#include "coordinator/pid_wait.h"
#include "coordinator/restore_images.h"
#include "coordinator/restore_plan.h"
#include "coordinator/restore_verify.h"
#include "coordinator/session.h"

namespace crpipe {

namespace {

constexpr int kDataFd = 3;
constexpr int kZombieWaitMs = 5000;
// The last phase: resume, which only the coordinator carries out. --check-only stops after
// share-fds, where every restorer still blocks on its channel.
constexpr RestorePhase kLastPhase = RestorePhase::RESUME;
constexpr RestorePhase kCheckOnlyLastPhase = RestorePhase::SHARE_FDS;

double nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// The restore policy on the session: every restorer gets its TaskOrder, then the phases
// one after the other, each sent to all once all answered PhaseDone for the one before.
// Any failure, any restorer that goes away, Ctrl-C: everything restored is killed.
class RestoreEvents : public SessionEvents {
 public:
  RestoreEvents(const RestoreOptions& opts, const RestorePlan& plan,
                inject::TreeInjector* injector, ProgressView& view, Log& log)
      : opts_(opts), plan_(plan), injector_(injector), view_(view), log_(log) {}

  bool resumed() const { return resumed_; }

  void addTask(Stage* s, pid_t pid) { tasks_[s] = pid; }
  void setRoot(Stage* root) { root_ = root; }

  Status start(const std::string& token, const std::vector<std::pair<pid_t, int>>& rootChannels) {
    const double t0 = nowMs();
    double filling = 0;
    for (size_t i = 0; i < plan_.tasks.size(); ++i) {
      Stage* s = stageOf(plan_.tasks[i].pid);
      auto mb = std::make_unique<capnp::MallocMessageBuilder>();
      const double f0 = nowMs();
      plan_.fillOrder(i, token, i == 0 ? rootChannels : std::vector<std::pair<pid_t, int>>{},
                      mb->initRoot<proto::Message>().initTaskOrder());
      filling += nowMs() - f0;
      CRPIPE_TRY(s->control->send(std::move(mb)));
    }
    log_.debug("task orders built in %.3f ms, queued in %.3f ms", filling, nowMs() - t0 - filling);
    return enter(RestorePhase::FORK_TREE);
  }

  void onMessage(Stage& s, proto::Message::Reader m) override {
    pid_t pid = tasks_.count(&s) != 0 ? tasks_.at(&s) : 0;
    switch (m.which()) {
      case proto::Message::HELLO:
        if (m.getHello().getRootPid() != pid) {
          abort("restorer on the channel of pid " + std::to_string(pid) + " says it is pid " +
                std::to_string(m.getHello().getRootPid()));
          return;
        }
        if (&s != root_) {
          // Its parent restorer never reaps it, so the pid cannot be reused under us.
          UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
          if (fd.valid()) {
            pidfds_[pid] = std::move(fd);
          }
        }
        log_.debug("restorer %d is up", pid);
        return;
      case proto::Message::PHASE_DONE: {
        auto d = m.getPhaseDone();
        if (d.getPhase() != current_ || d.getRound() != round_ || finishing_) {
          return;
        }
        auto& svc = serviceFds_[pid];
        svc.clear();
        for (int32_t fd : d.getServiceFds()) {
          svc.push_back(fd);
        }
        done_.insert(pid);
        if (done_.size() == plan_.tasks.size()) {
          phaseComplete();
        }
        return;
      }
      case proto::Message::FAILURE:
        abort(m.getFailure().getMessage().cStr());
        return;
      default:
        abort("restorer of pid " + std::to_string(pid) + " sent an unexpected " +
              describeMessage(m));
        return;
    }
  }

  void onExit(Stage& s) override {
    if (&s == root_ && resumed_) {
      rootExit_ = s.process->exit();
      log_.info("the restored root %d %s", plan_.tasks[0].pid, rootExit_.describe().c_str());
      return;
    }
    if (&s == root_ && !finishing_) {
      abort("the restorer of pid " + std::to_string(plan_.tasks[0].pid) + " " +
                s.process->exit().describe(),
            false);
    }
  }

  void onChannelClosed(Stage& s) override {
    // From the memory phase on, the tasks close the restorers' channels themselves.
    if (finishing_ || injecting_ || tasks_.count(&s) == 0) {
      return;
    }
    pid_t pid = tasks_.at(&s);
    abort(s.channelError ? *s.channelError
                         : "the restorer of pid " + std::to_string(pid) + " went away",
          false);
  }

  void onSignal(int signo) override {
    if (resumed_) {
      // The tree is restored and runs: crpipe only waits for its root, which gets the signal.
      if (root_ != nullptr && root_->process) {
        root_->process->signal(signo);
      }
      return;
    }
    abort(std::string("interrupted by ") + strsignal(signo), !finishing_);
  }

  const std::string& report() const { return check_.report; }

  Outcome outcome() const {
    Outcome o;
    if (!failure_.empty() || !fallback_.empty()) {
      o.exitCode = 1;
      o.messages.push_back("crpipe: restore failed: " +
                           (failure_.empty() ? fallback_ : failure_));
      o.messages.push_back(
          "crpipe: every process the restore created was killed; the images are unchanged");
      return o;
    }
    if (resumed_) {
      if (opts_.detach) {
        o.messages.push_back("crpipe: restored " + std::to_string(plan_.tasks.size()) +
                             " tasks (root " + std::to_string(plan_.tasks[0].pid) +
                             "); they run on");
        return o;
      }
      // Like a shell: the root's exit status, or 128 + the signal that killed it.
      o.exitCode = rootExit_.signal != 0 ? 128 + rootExit_.signal
                                         : static_cast<int>(rootExit_.status);
      return o;
    }
    if (opts_.checkOnly) {
      if (!check_.problems.empty()) {
        o.exitCode = 1;
        for (const auto& p : check_.problems) {
          o.messages.push_back("crpipe: check: " + p);
        }
        o.messages.push_back("crpipe: check-only: the restored tree differs from the images");
        return o;
      }
      o.messages.push_back("crpipe: check-only: " + std::to_string(plan_.tasks.size()) +
                           " tasks restored up to " + phaseName(kCheckOnlyLastPhase) +
                           " match the images; the tree was killed");
      return o;
    }
    o.exitCode = 1;
    o.messages.push_back("crpipe: restore failed: the restore ended before the tree resumed");
    return o;
  }

 private:
  Stage* stageOf(pid_t pid) {
    for (auto& [s, p] : tasks_) {
      if (p == pid) {
        return s;
      }
    }
    return nullptr;
  }

  // Phase{p} to every restorer; pendingConnect comes in plan_.connectRounds rounds, each
  // sent once every restorer answered the round before (the order of a listener's accept
  // queue across the tasks that connect to it).
  Status enter(RestorePhase p, uint32_t round = 0) {
    current_ = p;
    round_ = round;
    done_.clear();
    phaseStart_ = nowMs();
    view_.update("restore", phaseName(p), 0, plan_.tasks.size(), "");
    capnp::MallocMessageBuilder mb;
    auto ph = mb.initRoot<proto::Message>().initPhase();
    ph.setPhase(p);
    ph.setRound(round);
    ph.setRounds(p == RestorePhase::PENDING_CONNECT ? plan_.connectRounds : 1);
    for (auto& [s, pid] : tasks_) {
      if (s->control) {
        CRPIPE_TRY(s->control->send(mb));
      }
    }
    return {};
  }

  void phaseComplete() {
    if (current_ == RestorePhase::PENDING_CONNECT) {
      log_.info("phase %s round %u of %u: %zu tasks in %.3f ms", phaseName(current_), round_ + 1,
                plan_.connectRounds, plan_.tasks.size(), nowMs() - phaseStart_);
      if (round_ + 1 < plan_.connectRounds) {
        auto st = enter(current_, round_ + 1);
        if (!st) {
          abort(st.error().str());
        }
        return;
      }
    } else {
      log_.info("phase %s: %zu tasks in %.3f ms", phaseName(current_), plan_.tasks.size(),
                nowMs() - phaseStart_);
    }
    if (opts_.stopBeforeMemory && current_ == RestorePhase::SHARE_FDS) {
      park();
    }
    if (opts_.checkOnly && current_ == kCheckOnlyLastPhase) {
      // Every restorer is blocked on its channel now: /proc shows the tree as it stands
      // before memory restore.
      check_ = checkRestoredTree(plan_, serviceFds_);
      killAll();
      return;
    }
    if (current_ == RestorePhase::MEMORY) {
      runMemoryAndResume();
      return;
    }
    auto next = nextPhase(current_);
    auto st = enter(*next);
    if (!st) {
      abort(st.error().str());
    }
  }

  // The memory and resume phases are the coordinator's own: every restorer answered
  // PhaseDone{memory} and blocks on its channel; the injector seizes each and makes it
  // its task, then resume gives every thread its registers and lets all go at once. The
  // loop waits meanwhile (a few ms per task plus the page copy).
  void runMemoryAndResume() {
    injecting_ = true;
    auto st = injector_->restoreMemory();
    if (!st) {
      abort(st.error().str());
      return;
    }
    log_.info("phase memory: %zu tasks, %llu threads, %.1f MiB of pages in %.3f ms",
              plan_.tasks.size(), static_cast<unsigned long long>(injector_->threadCount()),
              static_cast<double>(injector_->bytesFilled()) / (1 << 20), nowMs() - phaseStart_);
    current_ = kLastPhase;
    phaseStart_ = nowMs();
    st = injector_->resume();
    if (!st) {
      abort(st.error().str());
      return;
    }
    resumed_ = true;
    log_.info("phase resume: %zu tasks in %.3f ms", plan_.tasks.size(), nowMs() - phaseStart_);
    view_.clear();
    // Tasks orphaned from now on are not crpipe's to reap.
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (!opts_.pidfile.empty()) {
      auto w = writePidfile(opts_.pidfile, plan_.tasks[0].pid);
      if (!w) {
        log_.warn("%s", w.error().str().c_str());
      }
    }
    if (opts_.detach && root_ != nullptr && root_->process) {
      root_->process->release();
    }
  }

  static Status writePidfile(const std::string& path, pid_t pid) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) {
      return failSys("--pidfile " + path);
    }
    std::string text = std::to_string(pid) + "\n";
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      return failSys("--pidfile " + path + ": write");
    }
    return {};
  }

  // --stop-before memory: every restorer cleared PR_SET_PDEATHSIG before its PhaseDone
  // and parks (closes its service fds, pause()) when its channel ends. crpipe leaves
  // without waiting for them: the tree lives on, to be inspected, dumped and killed by
  // the caller (crpipe's own parent, or the nearest subreaper, reaps it).
  [[noreturn]] void park() {
    log_.info("stop before memory: the restored tree (root %d) is left in pause()",
              plan_.tasks[0].pid);
    view_.clear();
    std::printf("restored root pid %d\n", plan_.tasks[0].pid);
    std::fflush(stdout);
    for (auto& [s, pid] : tasks_) {
      if (s->control) {
        s->control->shutdownWrite();
      }
    }
    std::fflush(stderr);
    ::_exit(0);
  }

  // A restorer's own Failure says what went wrong; a channel that ends or a restorer that
  // dies is only a consequence when another restorer failed first (children die with
  // their parent), so it is the reason only when nothing better arrives.
  void abort(const std::string& why, bool cause = true) {
    if (cause && failure_.empty()) {
      failure_ = why;
    } else if (!cause && fallback_.empty() && !finishing_) {
      fallback_ = why;
    }
    log_.debug("aborting: %s", why.c_str());
    killAll();
  }

  void killAll() {
    if (finishing_) {
      return;
    }
    finishing_ = true;
    view_.clear();
    if (root_ != nullptr && root_->process) {
      root_->process->signal(SIGKILL);
    }
    for (auto& [pid, fd] : pidfds_) {
      ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
    }
    // Restorers that never said hello die with their parents (PR_SET_PDEATHSIG).
    for (auto& [s, pid] : tasks_) {
      if (s->control) {
        s->control->shutdownWrite();
      }
    }
  }

  const RestoreOptions& opts_;
  const RestorePlan& plan_;
  inject::TreeInjector* injector_;
  ProgressView& view_;
  Log& log_;
  std::map<Stage*, pid_t> tasks_;
  Stage* root_ = nullptr;
  std::map<pid_t, UniqueFd> pidfds_;
  std::map<pid_t, std::vector<int>> serviceFds_;
  RestorePhase current_ = RestorePhase::FORK_TREE;
  uint32_t round_ = 0;  // of pendingConnect
  std::set<pid_t> done_;
  double phaseStart_ = 0;
  bool finishing_ = false;
  bool injecting_ = false;  // the coordinator took the restorers over (memory phase)
  bool resumed_ = false;    // the tree runs
  StageExit rootExit_;
  std::string failure_;
  std::string fallback_;
  TreeCheck check_;
};

// Stage events while only the serializer runs (reading images).
class ReaderEvents : public SessionEvents {
 public:
  void onMessage(Stage&, proto::Message::Reader) override {}
  void onExit(Stage&) override {}
  void onSignal(int) override {}
};

Outcome failed(const std::string& msg) { return Outcome{1, {"crpipe: " + msg}}; }

std::vector<std::string> logArgs(const LogOptions& log) {
  std::vector<std::string> a = {"-v", std::to_string(log.verbosity)};
  if (!log.file.empty()) {
    a.push_back("--log");
    a.push_back(log.file);
  }
  return a;
}

// The images, front to back: through `crpipe-serializer read` from DIR, or the stream.
Status loadImages(const RestoreOptions& opts, RestoreImages& images, Log& log) {
  if (opts.stream) {
    if (*opts.stream == "-") {
      // A pipe of 64 KiB takes a wake-up of each side per 64 KiB of pages: 1 MiB (the
      // unprivileged limit; a failure just keeps the default) cuts that sixteen-fold.
      ::fcntl(STDIN_FILENO, F_SETPIPE_SZ, 1 << 20);
      CRPIPE_TRY(readRestoreImages(STDIN_FILENO, "stdin", images));
      return images.attachData("");
    }
    UniqueFd in(::open(opts.stream->c_str(), O_RDONLY | O_CLOEXEC));
    if (!in.valid()) {
      return failSys("open stream " + *opts.stream);
    }
    CRPIPE_TRY(readRestoreImages(in.get(), *opts.stream, images));
    return images.attachData("");
  }
  auto bin = findStageBinary("crpipe-serializer");
  if (!bin) {
    return fail(std::move(bin).error());
  }
  ReaderEvents events;
  Session session(events);
  auto data = makeSocketPair();
  if (!data) {
    return fail(std::move(data).error());
  }
  // Entries come on the stream; pages-N.img and the data that follows entries (socket
  // queues, pipe buffers), nearly all the bytes, are mapped from DIR below instead of
  // being copied through the serializer and a socket.
  std::vector<std::string> args = {"read", "-D", opts.dir, "--out", "-", "--out-fd",
                                   std::to_string(kDataFd), "--no-pages", "--data-refs"};
  for (auto& a : logArgs(opts.log)) {
    args.push_back(a);
  }
  auto s = session.start("serializer", *bin, args, {{kDataFd, data->second.get()}}, UniqueFd());
  if (!s) {
    return fail(std::move(s).error());
  }
  data->second.reset();
  log.debug("reading %s through %s", opts.dir.c_str(), bin->c_str());
  auto st = readRestoreImages(data->first.get(), "images of " + opts.dir, images);
  data->first.reset();
  session.run();  // the serializer's exit
  const Stage& ser = *session.stages().front();
  if (!ser.process->exit().ok() && st) {
    return failMsg("crpipe-serializer read " + ser.process->exit().describe());
  }
  if (!st) {
    return st;
  }
  CRPIPE_TRY(images.mapRawImages(opts.dir));
  CRPIPE_TRY(images.attachData(opts.dir));
  log.debug("mapped %.1f MiB of pages from %s", static_cast<double>(images.mappedBytes()) / (1 << 20),
            opts.dir.c_str());
  return {};
}

// Reaps, in tree order, the restorers that became crpipe's children when their parents
// died (crpipe is their subreaper during a restore). Each is dead or dying: killed, or
// PR_SET_PDEATHSIG. waitpid() of a pid that is not our child returns at once.
void reapTree(const RestorePlan& plan) {
  for (size_t i = 1; i < plan.tasks.size(); ++i) {
    int status = 0;
    while (::waitpid(plan.tasks[i].pid, &status, __WALL) < 0 && errno == EINTR) {
    }
  }
}

}  // namespace

Outcome runRestore(const RestoreOptions& opts, ProgressView& view, Log& log,
                   std::string& report) {
  RestoreImages images;
  auto loaded = loadImages(opts, images, log);
  if (!loaded) {
    return failed(loaded.error().str());
  }
  PlanOptions po;
  po.shellJob = opts.shellJob;
  po.callerSid = ::getsid(0);
  po.callerPgid = ::getpgid(0);
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    if (opts.shellJob && po.callerTerminal.empty() && ::isatty(fd) == 1) {
      const char* name = ::ttyname(fd);
      po.callerTerminal = name != nullptr ? name : "";
    }
  }
  po.stopBeforeMemory = opts.stopBeforeMemory;
  po.extUnixSk = opts.extUnixSk;
  po.extUnixSkInodes = opts.extUnixSkInodes;
  po.unixDead = opts.unixDead;
  po.unixNameMap = opts.unixNameMap;
  po.inheritFds = opts.inheritFds;
  if (opts.checkOnly && opts.stopBeforeMemory) {
    return failed("--check-only and --stop-before are two different development modes; "
                  "choose one");
  }
  const double planStart = nowMs();
  auto plan = makeRestorePlan(images, po);
  if (!plan) {
    return failed(plan.error().str() + "; nothing was restored");
  }
  log.debug("planned %zu tasks, %zu files in %.3f ms", plan->tasks.size(), plan->files.size(),
            nowMs() - planStart);
  for (const auto& t : plan->retargetedTerminals) {
    log.info("--shell-job: the dumped terminal %s is now %s", t.c_str(), po.callerTerminal.c_str());
  }
  // Every pid and every thread's tid: checked here, before crpipe creates anything of the
  // tree. From here on crpipe starts no process or thread without set_tid (restorers are
  // cloned with their task's pid, threads with their tid), so none of its own can take one.
  std::vector<pid_t> pids;
  std::map<pid_t, pid_t> threadOf;
  for (const auto& t : plan->tasks) {
    pids.push_back(t.pid);
  }
  for (const auto& t : plan->tasks) {
    for (uint32_t tid : t.pstree.threads()) {
      if (static_cast<pid_t>(tid) != t.pid) {
        pids.push_back(static_cast<pid_t>(tid));
        threadOf[static_cast<pid_t>(tid)] = t.pid;
      }
    }
  }
  auto free = waitPidsFree(pids, kZombieWaitMs, log, threadOf);
  if (!free) {
    return failed(free.error().str() + "; nothing was restored");
  }
  auto restorerBin = findStageBinary("crpipe-restorer");
  if (!restorerBin) {
    return failed(restorerBin.error().str());
  }
  // Restorers whose parents die become ours, to be reaped here, not left to init.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);

  // The process state of every task, parsed and checked before anything is created.
  inject::TreeInjector injector(images, *plan, log);
  if (!opts.checkOnly) {
    const double loadStart = nowMs();
    auto ok = injector.load();
    if (!ok) {
      return failed(ok.error().str() + "; nothing was restored");
    }
    log.debug("process state of %zu tasks checked in %.3f ms", plan->tasks.size(),
              nowMs() - loadStart);
  }
  RestoreEvents events(opts, *plan, &injector, view, log);
  Outcome result;
  {
    Session session(events);
    // One channel per task. The root's restorer gets every restorer-side end, placed at
    // and above the service fd base, and passes each down the tree as it forks.
    const int base = plan->serviceFdBase;
    std::vector<UniqueFd> theirEnds;
    std::vector<ChildFd> fds;
    std::vector<std::pair<pid_t, int>> rootChannels;
    UniqueFd rootControl;
    for (size_t i = 0; i < plan->tasks.size(); ++i) {
      auto pair = makeSocketPair();
      if (!pair) {
        return failed(pair.error().str());
      }
      const pid_t pid = plan->tasks[i].pid;
      int childFd = i == 0 ? base : base + 1 + static_cast<int>(i);
      fds.push_back({childFd, pair->second.get()});
      if (i == 0) {
        rootControl = std::move(pair->first);
      } else {
        rootChannels.emplace_back(pid, childFd);
        auto s = session.attach("restorer " + std::to_string(pid), std::move(pair->first));
        if (!s) {
          return failed(s.error().str());
        }
        events.addTask(*s, pid);
      }
      theirEnds.push_back(std::move(pair->second));
    }
    fds.push_back({base + 1, STDERR_FILENO});  // the restorers' log
    std::vector<std::string> args = {"--control-fd", std::to_string(base), "--log-fd",
                                     std::to_string(base + 1), "-v",
                                     std::to_string(opts.log.verbosity)};
    const pid_t rootPid = plan->tasks[0].pid;
    auto root = session.startWithPid("restorer " + std::to_string(rootPid), *restorerBin, args,
                                     fds, std::move(rootControl), rootPid);
    theirEnds.clear();  // the root holds them now; a restorer that dies is EOF to us
    if (!root) {
      session.run();
      return failed(root.error().str() + "; nothing was restored");
    }
    events.addTask(*root, rootPid);
    events.setRoot(*root);
    char token[64];
    snprintf(token, sizeof(token), "%d-%ld", ::getpid(), static_cast<long>(nowMs() * 1000));
    log.info("restoring %zu tasks (root %d) from %s", plan->tasks.size(), rootPid,
             opts.stream ? opts.stream->c_str() : opts.dir.c_str());
    auto st = events.start(token, rootChannels);
    if (!st) {
      events.onSignal(SIGTERM);  // kills what exists
    }
    session.run();
    if (!events.resumed()) {
      reapTree(*plan);
    }
    result = events.outcome();
    report = events.report();
    if (!st) {
      result = failed(st.error().str());
    }
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  view.clear();
  return result;
}

}  // namespace crpipe
