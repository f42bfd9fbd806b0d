// crpipe-collector: freezes a process tree and writes its state as a stage stream.
#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "collector/dump.h"
#include "common/control_sender.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"

namespace {

using namespace crpipe;
using namespace crpipe::collector;

constexpr const char* kUsage =
    "usage: crpipe-collector -t PID (--out FILE|- | --out-fd N) [options]\n"
    "  -t, --tree PID          root of the tree to dump\n"
    "      --out FILE|-        write the stage stream to FILE (or stdout)\n"
    "      --out-fd N          write the stage stream to fd N\n"
    "      --control-fd N      coordinator channel: progress out, verdict in\n"
    "  -R, --leave-running     never kill the tree\n"
    "      --ext-unix-sk[=INO] allow connected unix sockets with a peer outside the tree\n"
    "      --external RES      unix[INO], pipe[INO] or file[MNT_ID:INODE]\n"
    "  -v N                    verbosity 0..4 (default 2)\n"
    "      --log FILE          log to FILE instead of stderr\n"
    "      --bpf               read fds and unix sockets through the BPF fast path\n"
    "      --no-bpf            no fast path: fds and sockets read with syscalls (the default)\n"
    "      --no-fd-table-bpf   list large fd tables through /proc as well (by default a\n"
    "                          table with room for 1,024 fds or more is read by a BPF\n"
    "                          iterator where the kernel allows it)\n"
    "      --no-pagemap-scan   read page tables entry by entry from /proc/PID/pagemap\n"
    "                          (by default the kernel lists the runs of pages to dump,\n"
    "                          PAGEMAP_SCAN, Linux 6.7+)\n"
    "      --page-refs         name pages instead of sending them: the serializer beside\n"
    "                          this collector reads them from the frozen tree (set by\n"
    "                          crpipe run dump -D; the tree waits frozen for the verdict)\n";

struct Args {
  DumpOptions dump;
  std::string out;
  int outFd = -1;
  int controlFd = -1;
  bool leaveRunning = false;
  int verbosity = 2;
  std::string logFile;
};

bool parseArgs(int argc, char** argv, Args& a) {
  enum {
    kOut = 256, kOutFd, kControlFd, kExtUnixSk, kExternal, kLog, kNoBpf, kBpf, kPageRefs,
    kNoFdTableBpf,
    kNoPagemapScan
  };
  static const option longOpts[] = {
      {"tree", required_argument, nullptr, 't'},
      {"out", required_argument, nullptr, kOut},
      {"out-fd", required_argument, nullptr, kOutFd},
      {"control-fd", required_argument, nullptr, kControlFd},
      {"leave-running", no_argument, nullptr, 'R'},
      {"ext-unix-sk", optional_argument, nullptr, kExtUnixSk},
      {"external", required_argument, nullptr, kExternal},
      {"log", required_argument, nullptr, kLog},
      {"no-bpf", no_argument, nullptr, kNoBpf},
      {"bpf", no_argument, nullptr, kBpf},
      {"no-fd-table-bpf", no_argument, nullptr, kNoFdTableBpf},
      {"no-pagemap-scan", no_argument, nullptr, kNoPagemapScan},
      {"page-refs", no_argument, nullptr, kPageRefs},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  int c;
  while ((c = getopt_long(argc, argv, "t:Rv:h", longOpts, nullptr)) != -1) {
    switch (c) {
      case 't':
        a.dump.root = static_cast<pid_t>(std::atoi(optarg));
        break;
      case kOut:
        a.out = optarg;
        break;
      case kOutFd:
        a.outFd = std::atoi(optarg);
        break;
      case kControlFd:
        a.controlFd = std::atoi(optarg);
        break;
      case 'R':
        a.leaveRunning = true;
        break;
      case kExtUnixSk:
        if (optarg != nullptr) {
          a.dump.extUnixSkInodes.insert(static_cast<uint32_t>(std::strtoul(optarg, nullptr, 10)));
        } else {
          a.dump.extUnixSk = true;
        }
        break;
      case kExternal:
        a.dump.externals.insert(optarg);
        break;
      case 'v':
        a.verbosity = std::atoi(optarg);
        break;
      case kLog:
        a.logFile = optarg;
        break;
      case kNoBpf:
        a.dump.useBpf = false;
        break;
      case kNoFdTableBpf:
        a.dump.fdTableBpf = false;
        break;
      case kNoPagemapScan:
        a.dump.pagemapScan = false;
        break;
      case kBpf:
        a.dump.useBpf = true;
        break;
      case kPageRefs:
        a.dump.pageRefs = true;
        break;
      case 'h':
        fputs(kUsage, stdout);
        exit(0);
      default:
        return false;
    }
  }
  if (a.dump.root <= 0 || (a.out.empty() && a.outFd < 0)) {
    return false;
  }
  if (a.dump.pageRefs && a.controlFd < 0) {
    fputs("crpipe-collector: --page-refs needs --control-fd: the tree must stay frozen until "
          "the serializer has read its pages\n", stderr);
    return false;
  }
  return true;
}

// Progress goes to the coordinator when there is one, else to the log.
class Progress : public ProgressSink {
 public:
  Progress(ControlSender& control, Log& log) : control_(control), log_(log) {}
  void progress(const char* step, uint64_t done, uint64_t total,
                const std::string& detail) override {
    if (!control_.connected()) {
      log_.info("%s %lu/%lu %s", step, static_cast<unsigned long>(done),
                static_cast<unsigned long>(total), detail.c_str());
      return;
    }
    control_.progress(step, done, total, detail);
  }

 private:
  ControlSender& control_;
  Log& log_;
};

// A Failure message at the end of the data stream tells its reader why it ends there.
void sendFailure(StageWriter& w, const Error& e) {
  capnp::MallocMessageBuilder mb;
  auto f = mb.initRoot<proto::Message>().initFailure();
  f.setMessage(e.str());
  f.setErrnoValue(e.err());
  if (w.write(mb)) {
    (void)w.flush();
  }
}

// Waits for the coordinator's verdict. Anything but an explicit kill releases the tree.
bool waitVerdictKill(int controlFd, Log& log) {
  StageReader in(controlFd, "control channel");
  for (;;) {
    auto m = in.next();
    if (!m) {
      log.warn("%s; releasing the tree", m.error().str().c_str());
      return false;
    }
    if (!*m) {
      log.warn("coordinator went away before its verdict; releasing the tree");
      return false;
    }
    if ((*m)->which() == proto::Message::VERDICT) {
      return (*m)->getVerdict().getKill();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A reader or coordinator that went away shows as EPIPE, which is handled: the tree is
  // released. Dying of SIGPIPE would also release it (the kernel detaches), but silently.
  signal(SIGPIPE, SIG_IGN);
  Args a;
  if (!parseArgs(argc, argv, a)) {
    fputs(kUsage, stderr);
    return 2;
  }
  FILE* logSink = stderr;
  if (!a.logFile.empty()) {
    logSink = fopen(a.logFile.c_str(), "ae");
    if (logSink == nullptr) {
      fprintf(stderr, "crpipe-collector: cannot open log %s: %s\n", a.logFile.c_str(),
              strerror(errno));
      return 2;
    }
  }
  Log log(logSink, a.verbosity, "collector: ");

  UniqueFd outOwned;
  int outFd = a.outFd;
  bool outIsFile = false;
  if (outFd < 0) {
    if (a.out == "-") {
      outFd = STDOUT_FILENO;
    } else {
      outOwned.reset(::open(a.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      if (!outOwned.valid()) {
        log.error("cannot create %s: %s", a.out.c_str(), strerror(errno));
        return 1;
      }
      outFd = outOwned.get();
      outIsFile = true;
    }
  }
  // Room for a page batch in flight (a pipe holds at most 1 MiB without CAP_SYS_RESOURCE;
  // batches are twice what it holds).
  widenStreamBuffer(outFd, 8 << 20);
  StageWriter data(outFd);
  ControlSender control(a.controlFd, log);
  control.hello(proto::Hello::Role::COLLECTOR, a.dump.root);
  Progress progress(control, log);

  DumpHold hold;  // before the tree: on any early return the tree is released first
  auto tree = collectTree(a.dump, log, data, progress, hold);
  if (!tree) {
    log.error("%s", tree.error().str().c_str());
    sendFailure(data, tree.error());
    control.failure(tree.error());
    return 1;
  }
  if (auto st = data.flush(); !st) {
    log.error("%s; releasing the tree", st.error().str().c_str());
    control.failure(st.error());
    return 1;  // the tree is released by its destructor
  }
  if (a.leaveRunning && !a.dump.pageRefs) {
    // Nothing will kill this tree, so it need not wait frozen for the images to be
    // committed: the stream is complete, release it now. (With --page-refs the serializer
    // is still reading its memory: it waits frozen for the verdict like any other.)
    log.info("stream complete; the tree goes on running");
    tree->release();
    hold.abandon();
    if (a.controlFd >= 0) {
      (void)waitVerdictKill(a.controlFd, log);
    }
    return 0;
  }
  // The tree waits frozen for the verdict; the exit closes what the dump holds.
  hold.abandon();
  bool kill = false;
  if (a.controlFd >= 0) {
    kill = waitVerdictKill(a.controlFd, log);
  } else if (outIsFile) {
    // Alone and writing a file: the images are safe once the file is on disk.
    if (::fsync(outFd) < 0) {
      Error e = Error::sys("fsync " + a.out);
      log.error("%s; releasing the tree", e.str().c_str());
      return 1;
    }
    kill = true;
  }
  if (kill && !a.leaveRunning) {
    log.info("dump done; killing the tree");
    tree->kill();
  } else {
    log.info("dump done; the tree goes on running");
    tree->release();
  }
  return 0;
}
