// crpipe-serializer: image directory <-> stage stream, and a readable dump of a stream.
#include <getopt.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/log.h"
#include "serializer/commands.h"
#include "common/control_sender.h"

namespace {

constexpr const char* kUsage =
    "usage: crpipe-serializer write -D DIR [--in FILE|-] [--in-fd N] [--control-fd N]\n"
    "                                [--page-refs]\n"
    "       crpipe-serializer read -D DIR [--out FILE|-] [--out-fd N] [--no-pages]\n"
    "                                [--data-refs]\n"
    "       crpipe-serializer decode [--in FILE|-] [--in-fd N]\n"
    "common options: [-v N] [--log FILE]\n"
    "\n"
    "write   reads a stage stream and writes its images into DIR/.crpipe-partial-XXXXXX,\n"
    "        moving them into DIR only once End arrived, the counts matched and every\n"
    "        file is on disk; then sends Committed on the control fd. On any error\n"
    "        nothing in DIR changes and a Failure goes to the control fd.\n"
    "        --page-refs takes pages the stream names instead of carrying them and\n"
    "        reads them from the frozen tasks itself (the collector beside it on this\n"
    "        host was started with --page-refs; crpipe run dump -D does this).\n"
    "read    puts the images of DIR on a stream (inventory first); --no-pages leaves\n"
    "        pages-N.img off (a reader with access to DIR maps them itself);\n"
    "        --data-refs leaves the data that follows entries (socket queues, pipe\n"
    "        buffers) in the files and sends its offsets (ImageChunk.dataAt).\n"
    "decode  prints every message of a stream, entries decoded as protobuf text.\n";

struct Args {
  std::string command;
  std::string dir;
  crpipe::StreamEndpoint in;
  crpipe::StreamEndpoint out;
  int controlFd = -1;
  bool noPages = false;
  bool dataRefs = false;
  bool pageRefs = false;
  int verbosity = 2;
  std::string logPath;
};

bool parseFd(const char* s, int* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < 0 || v > 1 << 20) {
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

// Returns an error text, or "" when the arguments are usable.
std::string parseArgs(int argc, char** argv, Args& a) {
  if (argc < 2) {
    return "no command given";
  }
  a.command = argv[1];
  if (a.command == "-h" || a.command == "--help") {
    return "";
  }
  enum { kIn = 256, kInFd, kOut, kOutFd, kControlFd, kLog, kNoPages, kDataRefs, kPageRefs };
  static const option kOpts[] = {
      {"dir", required_argument, nullptr, 'D'},
      {"in", required_argument, nullptr, kIn},
      {"in-fd", required_argument, nullptr, kInFd},
      {"out", required_argument, nullptr, kOut},
      {"out-fd", required_argument, nullptr, kOutFd},
      {"control-fd", required_argument, nullptr, kControlFd},
      {"log", required_argument, nullptr, kLog},
      {"no-pages", no_argument, nullptr, kNoPages},
      {"data-refs", no_argument, nullptr, kDataRefs},
      {"page-refs", no_argument, nullptr, kPageRefs},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  optind = 2;
  int c;
  while ((c = getopt_long(argc, argv, "D:v:h", kOpts, nullptr)) != -1) {
    switch (c) {
      case 'D':
        a.dir = optarg;
        break;
      case kIn:
        a.in.path = optarg;
        break;
      case kOut:
        a.out.path = optarg;
        break;
      case kInFd:
        if (!parseFd(optarg, &a.in.fd)) {
          return std::string("bad --in-fd ") + optarg;
        }
        break;
      case kOutFd:
        if (!parseFd(optarg, &a.out.fd)) {
          return std::string("bad --out-fd ") + optarg;
        }
        break;
      case kControlFd:
        if (!parseFd(optarg, &a.controlFd)) {
          return std::string("bad --control-fd ") + optarg;
        }
        break;
      case 'v':
        a.verbosity = std::atoi(optarg);
        break;
      case kLog:
        a.logPath = optarg;
        break;
      case kNoPages:
        a.noPages = true;
        break;
      case kDataRefs:
        a.dataRefs = true;
        break;
      case kPageRefs:
        a.pageRefs = true;
        break;
      case 'h':
        a.command = "--help";
        return "";
      default:
        return "bad option";
    }
  }
  if (optind != argc) {
    return std::string("unexpected argument ") + argv[optind];
  }
  if ((a.command == "write" || a.command == "read") && a.dir.empty()) {
    return a.command + " needs -D DIR";
  }
  if (a.command != "write" && a.command != "read" && a.command != "decode") {
    return "unknown command " + a.command;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  // A reader that goes away must show up as a write error, not kill us mid-cleanup.
  signal(SIGPIPE, SIG_IGN);
  Args a;
  std::string err = parseArgs(argc, argv, a);
  if (!err.empty()) {
    fprintf(stderr, "crpipe-serializer: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  if (a.command == "--help" || a.command == "-h") {
    fputs(kUsage, stdout);
    return 0;
  }
  FILE* logFile = stderr;
  if (!a.logPath.empty()) {
    logFile = fopen(a.logPath.c_str(), "ae");
    if (logFile == nullptr) {
      fprintf(stderr, "crpipe-serializer: open log %s: %s\n", a.logPath.c_str(),
              strerror(errno));
      return 1;
    }
  }
  crpipe::Log log(logFile, a.verbosity, "serializer: ");
  crpipe::Status st;
  if (a.command == "write") {
    crpipe::ControlSender ctl(a.controlFd, log);
    ctl.hello(crpipe::proto::Hello::Role::SERIALIZER);
    st = crpipe::runWrite({a.dir, a.in, a.controlFd, a.pageRefs}, ctl, log);
    if (!st) {
      // runWrite sent the Failure. With a coordinator listening, it prints the failure;
      // ours goes to the log.
      if (ctl.connected()) {
        if (!a.logPath.empty()) {
          log.error("%s", st.error().str().c_str());
        }
        return 1;
      }
    }
  } else if (a.command == "read") {
    st = crpipe::runRead({a.dir, a.out, a.noPages, a.dataRefs}, log);
  } else {
    st = crpipe::runDecode({a.in}, stdout);
  }
  if (!st) {
    fprintf(stderr, "crpipe-serializer: %s\n", st.error().str().c_str());
    return 1;
  }
  return 0;
}
