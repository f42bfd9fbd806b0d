#include "common/clone_pid.h"
#include "restorer/task.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "restorer/fd_transport.h"

namespace crpipe::restorer {

namespace {

// The fd numbers this process has open, read from /proc/self/fd (without the fd used to
// read the directory).
Result<std::vector<int>> openFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) {
    return failSys("opendir /proc/self/fd");
  }
  std::vector<int> out;
  int self = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') {
      continue;
    }
    int fd = std::atoi(e->d_name);
    if (fd != self) {
      out.push_back(fd);
    }
  }
  ::closedir(d);
  return out;
}

template <typename Keep>
Status closeFdsExcept(Keep keep) {
  auto fds = openFds();
  if (!fds) {
    return fail(std::move(fds).error());
  }
  for (int fd : *fds) {
    if (!keep(fd)) {
      ::close(fd);
    }
  }
  return {};
}

template <typename Msg>
Result<Msg> parseEntry(capnp::Data::Reader bytes, const char* what) {
  Msg m;
  if (!m.ParseFromArray(bytes.begin(), static_cast<int>(bytes.size()))) {
    return failMsg(std::string("task order: malformed ") + what);
  }
  return m;
}

}  // namespace

Task::Task(TaskStart start) : start_(std::move(start)), pid_(::getpid()) {
  log_ = Log(start_.logSink, start_.verbosity, "restorer " + std::to_string(pid_) + ": ");
  reader_ = std::make_unique<StageReader>(start_.control.get(),
                                          "control channel of restorer " + std::to_string(pid_));
  writer_ = std::make_unique<StageWriter>(start_.control.get());
  kinds_ = makeRestoreKinds();
}

Task::~Task() = default;

Status Task::send(capnp::MessageBuilder& mb) {
  CRPIPE_TRY(writer_->write(mb));
  return writer_->flush();
}

void Task::sendFailure(const Error& e, RestorePhase p) {
  log_.debug("failed in %s: %s", phaseName(p), e.str().c_str());
  capnp::MallocMessageBuilder mb;
  auto f = mb.initRoot<proto::Message>().initFailure();
  // Errors that name an fd already start with "pid P fd N"; others get the pid here.
  const std::string msg = e.str();
  f.setMessage(msg.starts_with("pid ") ? msg : "pid " + std::to_string(pid_) + ": " + msg);
  f.setErrnoValue(e.err());
  f.setPid(pid_);
  f.setPhase(p);
  (void)send(mb);  // a coordinator that is gone cannot hear it; we exit either way
}

Result<RestoreKind*> Task::kindFor(uint32_t id) const {
  auto it = files_.find(id);
  if (it == files_.end()) {
    return failMsg(where(id) + ": file id " + std::to_string(id) + " is not in the task order");
  }
  RestoreKind* kind = findKind(kinds_, it->second->type());
  if (kind == nullptr) {
    return failMsg(where(id) + ": no restore kind for files of type " +
                   images::FdTypes_Name(it->second->type()));
  }
  return kind;
}

Status Task::keep(uint32_t id, UniqueFd fd) {
  auto placed = placeHome(std::move(fd), homeOf(&homes_, id));
  if (!placed) {
    return fail(std::move(placed).error().context(where(id)));
  }
  made_.emplace(id, std::move(*placed));
  return {};
}

std::string Task::where(uint32_t fileId) const {
  for (const auto& fd : fds_) {
    if (fd.id() == fileId) {
      return "pid " + std::to_string(pid_) + " fd " + std::to_string(fd.fd());
    }
  }
  for (const auto& [pid, ids] : sends_) {
    if (std::find(ids.begin(), ids.end(), fileId) != ids.end()) {
      return "pid " + std::to_string(pid_) + " file " + std::to_string(fileId) + " (for pid " +
             std::to_string(pid) + ")";
    }
  }
  return "pid " + std::to_string(pid_) + " file " + std::to_string(fileId);
}

int Task::run() {
  {
    capnp::MallocMessageBuilder mb;
    auto h = mb.initRoot<proto::Message>().initHello();
    h.setRole(proto::Hello::Role::RESTORER);
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    h.setToolVersion(CRPIPE_VERSION);
    h.setRootPid(pid_);
    if (!send(mb)) {
      return 1;
    }
  }
  auto st = readOrder();
  if (!st) {
    sendFailure(st.error(), current_);
    return 1;
  }
  for (;;) {
    auto msg = reader_->next();
    if (!msg) {
      log_.error("%s", msg.error().str().c_str());
      return 1;
    }
    if (!msg->has_value()) {
      if (parkAfterShare_ && current_ == RestorePhase::SHARE_FDS) {
        park();
      }
      // The coordinator ended the restore (or died): nothing restored may stay behind.
      return 0;
    }
    if ((*msg)->which() != proto::Message::PHASE) {
      sendFailure(Error::plain("unexpected " + describeMessage(**msg) + " on the control channel"),
                  current_);
      return 1;
    }
    current_ = (*msg)->getPhase().getPhase();
    round_ = (*msg)->getPhase().getRound();
    rounds_ = std::max<uint32_t>((*msg)->getPhase().getRounds(), 1);
    log_.debug("phase %s (round %u of %u)", phaseName(current_), round_ + 1, rounds_);
    auto done = phase(current_);
    if (!done) {
      sendFailure(done.error(), current_);
      return 1;
    }
    if (parkAfterShare_ && current_ == RestorePhase::SHARE_FDS) {
      // The coordinator leaves once every task is done: nobody may die with it now.
      ::prctl(PR_SET_PDEATHSIG, 0);
    }
    capnp::MallocMessageBuilder mb;
    auto d = mb.initRoot<proto::Message>().initPhaseDone();
    d.setPid(pid_);
    d.setPhase(current_);
    d.setRound(round_);
    auto svc = d.initServiceFds(2);
    svc.set(0, start_.control.get());
    svc.set(1, ::fileno(start_.logSink));
    if (!send(mb)) {
      return 1;
    }
  }
}

Status Task::readOrder() {
  auto msg = reader_->next();
  if (!msg) {
    return fail(std::move(msg).error());
  }
  if (!msg->has_value() || (*msg)->which() != proto::Message::TASK_ORDER) {
    return failMsg("expected a task order first");
  }
  // Kept for the task's whole restore: the kinds keep readers into it (queued bytes).
  order_ = reader_->takeLast();
  const auto start = std::chrono::steady_clock::now();
  auto o = order_->getRoot<proto::Message>().getTaskOrder();
  auto ps = parseEntry<images::PstreeEntry>(o.getPstree(), "pstree entry");
  if (!ps) {
    return fail(std::move(ps).error());
  }
  pstree_ = std::move(*ps);
  if (static_cast<pid_t>(pstree_.pid()) != pid_) {
    return failMsg("task order for pid " + std::to_string(pstree_.pid()) + " reached pid " +
                   std::to_string(pid_));
  }
  setsid_ = o.getSetsid();
  pgid_ = o.getPgid();
  for (int32_t c : o.getChildren()) {
    children_.push_back(c);
  }
  for (int32_t d : o.getDescendants()) {
    descendants_.insert(d);
  }
  for (auto c : o.getChannels()) {
    start_.channels.emplace(c.getPid(), UniqueFd(c.getFd()));
  }
  fdBase_ = o.getServiceFdBase();
  parkAfterShare_ = o.getParkAfterShare();
  token_ = o.getToken();
  for (auto b : o.getFds()) {
    auto e = parseEntry<images::FdinfoEntry>(b, "fdinfo entry");
    if (!e) {
      return fail(std::move(e).error());
    }
    homes_.try_emplace(e->id(), static_cast<int>(e->fd()));  // fds come in fd order
    fds_.push_back(std::move(*e));
  }
  for (auto b : o.getFiles()) {
    auto* e = google::protobuf::Arena::CreateMessage<images::FileEntry>(&arena_);
    if (!e->ParseFromArray(b.begin(), static_cast<int>(b.size()))) {
      return failMsg("task order: malformed file entry");
    }
    files_.emplace(e->id(), e);
  }
  for (auto pd : o.getPipeData()) {
    auto e = parseEntry<images::PipeDataEntry>(pd.getEntry(), "pipe data entry");
    if (!e) {
      return fail(std::move(e).error());
    }
    auto data = pd.getData();
    uint32_t id = e->pipe_id();
    (pd.getFifo() ? fifoData_ : pipeData_)
        .emplace(id, std::make_pair(std::move(*e),
                                    std::string(reinterpret_cast<const char*>(data.begin()),
                                                data.size())));
  }
  for (auto i : o.getInherited()) {
    inherited_[i.getFileId()] = i.getPeer();
  }
  coordinatorPid_ = o.getCoordinatorPid();
  for (auto s : o.getSends()) {
    sends_[s.getPeer()].push_back(s.getFileId());
  }
  for (auto r : o.getReceives()) {
    receives_.emplace(r.getFileId(), r.getPeer());
  }

  for (auto& k : kinds_) {
    CRPIPE_TRY(k->takeOrder(o, files_));
  }
  log_.debug("order parsed in %.3f ms", msSince(start));

  // What this task creates: the descriptions it holds and does not receive, and those it
  // creates for others. Each starts in its kind's first phase.
  std::set<uint32_t> create;
  for (const auto& fd : fds_) {
    if (!receives_.contains(fd.id())) {
      create.insert(fd.id());
    }
  }
  for (const auto& [pid, ids] : sends_) {
    create.insert(ids.begin(), ids.end());
  }
  for (uint32_t id : create) {
    auto found = kindFor(id);
    if (!found) {
      return fail(std::move(found).error());
    }
    RestoreKind* kind = *found;
    pending_[kind->firstPhase()].push_back(id);
  }
  // Files passed with SCM_RIGHTS in the queues this task writes back are opened in accept,
  // before the unix sockets write the messages that carry them in refillQueues (issue 5).
  std::vector<uint32_t> early;
  for (uint32_t id : o.getScmFiles()) {
    auto found = kindFor(id);
    if (!found) {
      return fail(std::move(found).error());
    }
    RestoreKind* kind = *found;
    auto& first = pending_[kind->firstPhase()];
    first.erase(std::remove(first.begin(), first.end(), id), first.end());
    if (first.empty()) {
      pending_.erase(kind->firstPhase());
    }
    early.push_back(id);
  }
  if (!early.empty()) {
    auto& accept = pending_[RestorePhase::ACCEPT];
    accept.insert(accept.begin(), early.begin(), early.end());
  }

  if (setsid_ && ::setsid() < 0) {
    return failSys("setsid");
  }
  // Channels of tasks outside this subtree were inherited from the parent; they are not
  // ours to hold (their own restorers must see EOF when the coordinator goes away).
  for (auto it = start_.channels.begin(); it != start_.channels.end();) {
    it = descendants_.contains(it->first) ? std::next(it) : start_.channels.erase(it);
  }
  auto t = openTransport(token_, pid_);
  if (!t) {
    return fail(std::move(t).error());
  }
  auto moved = moveAbove(std::move(*t), fdBase_);
  if (!moved) {
    return fail(std::move(moved).error());
  }
  transport_ = std::move(*moved);
  log_.debug("order: %zu children, %zu fds, %zu to create, %zu to send, %zu to receive",
             children_.size(), fds_.size(), create.size(), sends_.size(), receives_.size());
  return {};
}

Status Task::phase(RestorePhase p) {
  switch (p) {
    case RestorePhase::FORK_TREE:
      return forkTree();
    case RestorePhase::GROUP_LEADERS:
      return setGroup(true);
    case RestorePhase::GROUP_MEMBERS:
      return setGroup(false);
    case RestorePhase::BIND_LISTEN:
    case RestorePhase::CONNECT:
    case RestorePhase::ACCEPT:
    case RestorePhase::PENDING_CONNECT:
    case RestorePhase::REFILL_QUEUES:
      // Issue 5: the unix socket kind opens its sockets in these phases (firstPhase and
      // WaitFor); no kind of this build asks for them.
      return openDescriptions(p);
    case RestorePhase::OPEN_FILES:
      return openDescriptions(p);
    case RestorePhase::SHARE_FDS:
      return shareAndInstall();
    case RestorePhase::MEMORY:
      // Nothing to do here: once every restorer answered, the coordinator seizes this
      // process where it blocks on the channel (read), and turns it into the task by
      // syscall injection (coordinator/inject/). The restorer's code never runs again.
      return {};
    case RestorePhase::RESUME:
      return failMsg("resume is the coordinator's: a restorer never gets it");
  }
  return failMsg("unknown phase");
}

Status Task::forkTree() {
  for (pid_t child : children_) {
    auto ch = start_.channels.find(child);
    if (ch == start_.channels.end()) {
      return failMsg("no control channel for child " + std::to_string(child));
    }
    pid_t tid[1] = {child};
    clone_args args{};
    args.exit_signal = SIGCHLD;
    args.set_tid = reinterpret_cast<uint64_t>(tid);
    args.set_tid_size = 1;
    // A raw clone3 is a fork with the pid chosen: the child runs on a copy of this
    // stack and never returns through it (becomeChild ends in _exit).
    long r = clone3WithPid(args);
    if (r < 0) {
      if (errno == EEXIST) {
        return failSys("clone3 child " + std::to_string(child) +
                       ": the pid is taken by another process");
      }
      return failSys("clone3 child " + std::to_string(child));
    }
    if (r == 0) {
      becomeChild(child);
    }
    log_.debug("child %d created", child);
  }
  // The children hold their channels (and their subtrees'); ours go.
  start_.channels.clear();
  return {};
}

void Task::becomeChild(pid_t pid) {
  // The coordinator owns the restore: a restorer whose parent dies goes too, so a
  // failed restore leaves nothing behind. Issue 4 clears this before the tree resumes.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || ::getppid() != pid_) {
    _exit(1);
  }
  TaskStart start;
  start.logSink = start_.logSink;
  start.verbosity = start_.verbosity;
  std::set<int> keep = {::fileno(start_.logSink)};
  for (auto& [p, fd] : start_.channels) {
    if (p == pid) {
      start.control = std::move(fd);
    } else {
      keep.insert(fd.get());
      start.channels.emplace(p, std::move(fd));
    }
  }
  keep.insert(start.control.get());
  // Everything else (the parent's channel, its transport socket) belongs to the parent.
  // The parent's objects in this copy of memory are never destroyed: we _exit below.
  if (!closeFdsExcept([&keep](int fd) { return fd <= 2 || keep.contains(fd); })) {
    _exit(1);
  }
  int rc = 1;
  try {
    Task child(std::move(start));
    rc = child.run();
  } catch (...) {
    rc = 1;
  }
  _exit(rc);
}

Status Task::setGroup(bool leaders) {
  const bool leader = pgid_ == pid_;
  if (leader != leaders || ::getpgid(0) == pgid_) {
    return {};
  }
  if (::setpgid(0, leader ? 0 : pgid_) < 0) {
    return failSys("setpgid(0, " + std::to_string(pgid_) + ")");
  }
  return {};
}

Status Task::openDescriptions(RestorePhase p) {
  auto list = std::move(pending_[p]);
  pending_.erase(p);
  // Lives for this phase: the spare ends of pipes and the helper opens of FIFOs close
  // when it ends.
  OpenContext ctx{pid_, p, files_, pipeData_, fifoData_, {}, {}, log_, fdBase_, &homes_, &made_,
                  &inherited_, coordinatorPid_};
  ctx.round = round_;
  ctx.rounds = rounds_;
  for (const auto& kind : kinds_) {
    CRPIPE_TRY_CTX(kind->atPhase(ctx), std::string(kind->name()) + "s in " + phaseName(p));
  }
  for (uint32_t id : list) {
    const images::FileEntry& e = *files_.at(id);
    RestoreKind* kind = findKind(kinds_, e.type());
    auto r = kind->open(ctx, e);
    if (!r) {
      return fail(std::move(r).error().context(where(id)));
    }
    if (r->isDone()) {
      CRPIPE_TRY(keep(id, r->takeFd()));
      continue;
    }
    auto later = r->phase();
    if (phaseIndex(later) <= phaseIndex(p) ||
        phaseIndex(later) > phaseIndex(RestorePhase::SHARE_FDS)) {
      return failMsg(where(id) + ": " + std::string(kind->name()) + " asks to wait for phase " +
                     phaseName(later) + " from phase " + phaseName(p));
    }
    pending_[later].push_back(id);
  }
  return {};
}

void Task::park() {
  // --stop-before memory: the task keeps only its own fds and waits to be inspected,
  // dumped or killed.
  log_.debug("parked before memory");
  std::fflush(start_.logSink);
  ::close(::fileno(start_.logSink));
  start_.control.reset();
  for (;;) {
    ::pause();
  }
}

Status Task::shareAndInstall() {
  // Kinds that asked for it do their last step before the hand-over.
  CRPIPE_TRY(openDescriptions(RestorePhase::SHARE_FDS));
  if (!pending_.empty()) {
    return failMsg(where(pending_.begin()->second.front()) + ": still waiting for phase " +
                   phaseName(pending_.begin()->first));
  }
  std::map<pid_t, std::vector<Outgoing>> out;
  for (const auto& [pid, ids] : sends_) {
    for (uint32_t id : ids) {
      auto it = made_.find(id);
      if (it == made_.end()) {
        return failMsg(where(id) + ": was not created");
      }
      out[pid].push_back({id, it->second.get()});
    }
  }
  std::map<uint32_t, UniqueFd> received;
  auto ex = exchangeFds(transport_.get(), token_, out, receives_, fdBase_, received);
  if (!ex) {
    return fail(std::move(ex).error().context("hand over fds"));
  }
  for (auto& [id, fd] : received) {
    CRPIPE_TRY(keep(id, std::move(fd)));
  }
  // Every fd at its number. Each source lives at its home (the lowest number of its own
  // fds) or at or above fdBase_, above every fd number of the task, so no dup3 overwrites
  // a source another fd still needs.
  std::set<int> restored;
  std::vector<uint32_t> atHome;  // sources that are the task's fd themselves: kept open
  for (const auto& fd : fds_) {
    auto it = made_.find(fd.id());
    if (it == made_.end()) {
      return failMsg("fd " + std::to_string(fd.fd()) + ": file id " + std::to_string(fd.id()) +
                     " was neither created nor received");
    }
    int target = static_cast<int>(fd.fd());
    int cloexec = (fd.flags() & FD_CLOEXEC) != 0 ? O_CLOEXEC : 0;
    if (it->second.get() == target) {
      if (::fcntl(target, F_SETFD, cloexec != 0 ? FD_CLOEXEC : 0) < 0) {
        return failSys("fd " + std::to_string(target) + ": F_SETFD");
      }
      restored.insert(target);
      atHome.push_back(fd.id());
      continue;
    }
    if (::dup3(it->second.get(), target, cloexec) < 0) {
      return failSys("fd " + std::to_string(target) + ": dup3");
    }
    restored.insert(target);
  }
  for (uint32_t id : atHome) {
    (void)made_.at(id).release();
  }
  made_.clear();
  transport_.reset();
  // What the restorer inherited below the service range (crpipe's stdio) and the task
  // did not have goes; the restorer's own fds stay above it. close_range over the gaps
  // between the task's fds: listing /proc/self/fd costs a dentry per fd.
  unsigned from = 0;
  for (int fd : restored) {
    if (fd >= fdBase_) {
      break;
    }
    if (static_cast<unsigned>(fd) > from &&
        ::syscall(SYS_close_range, from, static_cast<unsigned>(fd) - 1, 0) < 0) {
      return failSys("close_range " + std::to_string(from) + ".." + std::to_string(fd - 1));
    }
    from = static_cast<unsigned>(fd) + 1;
  }
  if (fdBase_ > 0 && static_cast<unsigned>(fdBase_) > from &&
      ::syscall(SYS_close_range, from, static_cast<unsigned>(fdBase_) - 1, 0) < 0) {
    return failSys("close_range " + std::to_string(from) + ".." + std::to_string(fdBase_ - 1));
  }
  return {};
}

}  // namespace crpipe::restorer
