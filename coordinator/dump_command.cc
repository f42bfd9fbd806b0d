#include "coordinator/dump_command.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include "common/partial_dirs.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"
#include "coordinator/session.h"

namespace crpipe {

namespace {

// The data channel is a pipe, collector -> serializer: the collector lends its page
// batches to it (vmsplice) and the serializer splices them into pages-N.img, so page
// contents are copied once between the two (a socket copies them in and out). It holds
// what the pipe size allows: 8 MiB where the caller may (CAP_SYS_RESOURCE past
// /proc/sys/fs/pipe-max-size), else that limit (1 MiB by default), so that the collector
// writes on while the serializer waits for a CPU instead of the two taking turns.
Result<std::pair<UniqueFd, UniqueFd>> makeDataPipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) < 0) {
    return failSys("pipe for the data stream");
  }
  std::pair<UniqueFd, UniqueFd> ends{UniqueFd(p[0]), UniqueFd(p[1])};
  if (::fcntl(p[1], F_SETPIPE_SZ, 8 << 20) < 0) {
    (void)::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
  }
  return ends;
}

// Fd numbers the stages get their channels on.
constexpr int kDataFd = 3;
constexpr int kControlFd = 4;

std::vector<std::string> logArgs(const LogOptions& log) {
  std::vector<std::string> a = {"-v", std::to_string(log.level())};
  if (!log.file.empty()) {
    a.push_back("--log");
    a.push_back(log.file);
  }
  return a;
}

void append(std::vector<std::string>& to, const std::vector<std::string>& more) {
  to.insert(to.end(), more.begin(), more.end());
}

// The dump policy. The tree is killed only after the serializer said Committed, and only
// through the collector's control channel; every other way out (a stage's failure, a
// stage that dies, Ctrl-C, crpipe itself dying) ends with the collector seeing EOF on
// that channel before any verdict, which makes it release the tree running.
class DumpEvents : public SessionEvents {
 public:
  DumpEvents(const DumpOptions& opts, ProgressView& view, Log& log)
      : opts_(opts), view_(view), log_(log) {}

  void setStages(Stage* collector, Stage* serializer) {
    collector_ = collector;
    serializer_ = serializer;
  }

  void onMessage(Stage& s, proto::Message::Reader m) override {
    switch (m.which()) {
      case proto::Message::HELLO:
        log_.debug("%s says hello: protocol %u, version %s", s.name.c_str(),
                   m.getHello().getProtocolVersion(), m.getHello().getToolVersion().cStr());
        if (m.getHello().getProtocolVersion() != proto::PROTOCOL_VERSION) {
          protocolMismatch_ = s.name + " speaks stage protocol " +
                              std::to_string(m.getHello().getProtocolVersion()) +
                              ", crpipe speaks " + std::to_string(proto::PROTOCOL_VERSION);
          release();
        }
        return;
      case proto::Message::PROGRESS: {
        auto p = m.getProgress();
        view_.update(s.name, p.getStep().cStr(), p.getDone(), p.getTotal(), p.getDetail().cStr());
        return;
      }
      case proto::Message::FAILURE:
        log_.debug("%s failed: %s", s.name.c_str(), m.getFailure().getMessage().cStr());
        release();
        return;
      case proto::Message::COMMITTED:
        if (&s == serializer_) {
          auto c = m.getCommitted();
          committedImages_ = c.getImages();
          committedBytes_ = c.getBytes();
          committed_ = true;
          sendVerdict();
        }
        return;
      default:
        log_.warn("%s sent an unexpected %s", s.name.c_str(), describeMessage(m).c_str());
        return;
    }
  }

  void onExit(Stage& s) override {
    log_.debug("%s %s", s.name.c_str(), s.process->exit().describe().c_str());
    if (&s == serializer_ && !committed_) {
      release();
      // A serializer that was killed could not remove its partial directory.
      UniqueFd dir(::open(opts_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (dir.valid()) {
        removeStalePartialDirs(dir.get());
      }
    }
  }

  void onSignal(int signo) override {
    ++signals_;
    if (signals_ == 1) {
      interrupted_ = signo;
      view_.line(std::string("crpipe: ") + strsignal(signo) + ": releasing the tree");
      release();
      return;
    }
    // Asked twice: stop the stages. A collector that dies detaches from the tree, which
    // then runs on.
    for (Stage* s : {collector_, serializer_}) {
      if (s != nullptr) {
        s->process->signal(SIGTERM);
      }
    }
  }

  Outcome outcome() const;

 private:
  void release() {
    if (verdictSent_ || released_ || collector_ == nullptr || !collector_->control) {
      return;
    }
    released_ = true;
    log_.info("releasing the tree: no verdict for the collector");
    collector_->control->shutdownWrite();
  }

  void sendVerdict() {
    if (released_ || interrupted_ != 0 || collector_->failure || serializer_->failure) {
      return;
    }
    capnp::MallocMessageBuilder mb;
    bool kill = !opts_.collector.leaveRunning;
    mb.initRoot<proto::Message>().initVerdict().setKill(kill);
    auto st = collector_->control->send(mb);
    if (!st) {
      verdictError_ = st.error().str();
      release();
      return;
    }
    verdictSent_ = true;
    collector_->control->shutdownWrite();
    log_.info("images committed; verdict sent: %s", kill ? "kill" : "release");
  }

  const DumpOptions& opts_;
  ProgressView& view_;
  Log& log_;
  Stage* collector_ = nullptr;
  Stage* serializer_ = nullptr;
  bool committed_ = false;
  bool verdictSent_ = false;
  bool released_ = false;
  int interrupted_ = 0;
  int signals_ = 0;
  uint32_t committedImages_ = 0;
  uint64_t committedBytes_ = 0;
  std::string protocolMismatch_;
  std::string verdictError_;
};

Outcome DumpEvents::outcome() const {
  Outcome o;
  o.exitCode = 1;
  // The stage that failed of its own accord says why, as it said it: the collector's
  // failure is the cause when the serializer only echoes it (Failure.upstream), and the
  // serializer's when it failed on its own (no image directory, a full disk, a page it
  // could not read) and the collector only found its stream broken after it.
  const bool serializerOwn =
      serializer_ != nullptr && serializer_->failure && !serializer_->failureUpstream;
  if (serializerOwn) {
    o.messages.push_back(*serializer_->failure);
  } else if (collector_->failure) {
    o.messages.push_back(*collector_->failure);
  } else if (serializer_ != nullptr && serializer_->failure) {
    o.messages.push_back(*serializer_->failure);
  } else if (!protocolMismatch_.empty()) {
    o.messages.push_back("crpipe: " + protocolMismatch_);
  } else if (interrupted_ != 0) {
    o.messages.push_back(std::string("crpipe: interrupted by ") + strsignal(interrupted_) +
                         "; the tree was released");
  } else if (!verdictError_.empty()) {
    o.messages.push_back("crpipe: " + verdictError_);
  }
  bool stagesOk = true;
  for (const Stage* s : {collector_, serializer_}) {
    if (s == nullptr) {
      continue;
    }
    if (!s->process->exit().ok()) {
      stagesOk = false;
      if (o.messages.empty() || s->process->exit().signal != 0) {
        o.messages.push_back("crpipe: " + s->name + " " + s->process->exit().describe());
      }
    }
    if (s->channelError && o.messages.empty()) {
      o.messages.push_back("crpipe: " + *s->channelError);
    }
  }
  bool done = serializer_ == nullptr ? stagesOk : (stagesOk && verdictSent_);
  if (done && o.messages.empty()) {
    o.exitCode = 0;
    bool kill = !opts_.collector.leaveRunning;
    if (serializer_ == nullptr) {
      o.messages.push_back("crpipe: stream of tree " + std::to_string(opts_.collector.pid) +
                           " written to " + *opts_.stream + "; tree left running");
    } else {
      o.messages.push_back("crpipe: dumped tree " + std::to_string(opts_.collector.pid) +
                           " into " + opts_.dir + " (" + std::to_string(committedImages_) +
                           " images, " + std::to_string(committedBytes_) + " bytes); tree " +
                           (kill ? "killed" : "left running"));
    }
  } else if (o.messages.empty()) {
    o.messages.push_back("crpipe: dump failed; the tree was released");
  }
  return o;
}

Outcome failed(const Error& e) {
  return Outcome{1, {"crpipe: " + e.str()}};
}

}  // namespace

Outcome runDump(const DumpOptions& opts, ProgressView& view, Log& log) {
  auto collectorBin = findStageBinary("crpipe-collector");
  if (!collectorBin) {
    return failed(collectorBin.error());
  }
  std::optional<std::string> serializerBin;
  if (!opts.stream) {
    auto b = findStageBinary("crpipe-serializer");
    if (!b) {
      return failed(b.error());
    }
    serializerBin = *b;
  }

  DumpEvents events(opts, view, log);
  Session session(events);
  auto collCtl = makeSocketPair();
  if (!collCtl) {
    return failed(collCtl.error());
  }

  std::vector<std::string> collArgs = {"-t", std::to_string(opts.collector.pid)};
  std::vector<ChildFd> collFds = {{kControlFd, collCtl->second.get()}};
  // The data channel's collector end; closed here once the collector holds it.
  UniqueFd collectorData;
  Stage* serializer = nullptr;
  if (opts.stream) {
    append(collArgs, {"--out", *opts.stream});
  } else {
    auto data = makeDataPipe();  // first: the serializer's (read) end
    auto serCtl = makeSocketPair();
    if (!data || !serCtl) {
      return failed(!data ? data.error() : serCtl.error());
    }
    // --page-refs on both sides: the serializer, on this host, reads the pages of the
    // frozen tree itself instead of taking them through the pipe (stage-protocol.md).
    std::vector<std::string> serArgs = {"write",   "-D",
                                        opts.dir,  "--in-fd",
                                        std::to_string(kDataFd), "--control-fd",
                                        std::to_string(kControlFd), "--page-refs"};
    append(serArgs, logArgs(opts.log));
    auto s = session.start("serializer", *serializerBin, serArgs,
                           {{kDataFd, data->first.get()}, {kControlFd, serCtl->second.get()}},
                           std::move(serCtl->first));
    if (!s) {
      return failed(s.error());
    }
    serializer = *s;
    collectorData = std::move(data->second);
    append(collArgs, {"--out", "-", "--out-fd", std::to_string(kDataFd), "--page-refs"});
    collFds.push_back({kDataFd, collectorData.get()});
  }
  append(collArgs, {"--control-fd", std::to_string(kControlFd)});
  append(collArgs, opts.collector.passThrough());
  append(collArgs, logArgs(opts.log));
  auto collector =
      session.start("collector", *collectorBin, collArgs, collFds, std::move(collCtl->first));
  if (!collector) {
    // The serializer, if it runs, sees its stream end early and removes what it wrote.
    collectorData.reset();
    session.run();
    return failed(collector.error());
  }
  events.setStages(*collector, serializer);
  if (opts.stream) {
    // A stream is not images: nobody commits it, so the tree is always released. EOF on
    // the control channel right away tells the collector so.
    (*collector)->control->shutdownWrite();
  }
  // The children hold their ends now; crpipe keeps only its control ends, so that a
  // stage that dies is seen as EOF by the other.
  collCtl->second.reset();
  collectorData.reset();
  log.info("dumping tree %d %s", opts.collector.pid,
           opts.stream ? ("as a stream to " + *opts.stream).c_str() : ("into " + opts.dir).c_str());
  session.run();
  view.clear();
  return events.outcome();
}

}  // namespace crpipe
