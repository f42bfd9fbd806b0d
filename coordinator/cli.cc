#include "coordinator/cli.h"

#include <getopt.h>

#include <cstdlib>
#include <cstring>

namespace crpipe {

namespace {

enum LongOnly {
  kExtUnixSk = 256,
  kExternal,
  kNoBpf,
  kBpf,
  kStream,
  kReverse,
  kJson,
  kText,
  kSockets,
  kLog,
  kPidfile,
  kShellJob,
  kCheckOnly,
  kStopBefore,
  kUnixNameMap,
  kExtUnixSkDead,
  kInheritFd,
};

Result<pid_t> parsePid(const char* s) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > (1 << 22)) {
    return failMsg(std::string("bad pid '") + s + "'");
  }
  return static_cast<pid_t>(v);
}

bool isNumber(const char* s) {
  if (s == nullptr || *s == '\0') {
    return false;
  }
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') {
      return false;
    }
  }
  return true;
}

// -v as CRIU takes it: -v (one more), -vvv (three more), -v4; also -v 4.
void parseVerbosity(int argc, char** argv, LogOptions& log) {
  log.verbositySet = true;
  if (optarg == nullptr) {
    if (optind < argc && isNumber(argv[optind])) {
      log.verbosity = std::atoi(argv[optind++]);
    } else {
      ++log.verbosity;
    }
  } else if (optarg[0] == 'v') {
    log.verbosity += static_cast<int>(std::strlen(optarg)) + 1;
  } else {
    log.verbosity = std::atoi(optarg);
  }
}

// The options shared by `run dump` and `stage collect`. Returns false if c is not one.
bool collectorOption(int c, CollectorOptions& o, Result<void>& err) {
  switch (c) {
    case 't': {
      auto p = parsePid(optarg);
      if (!p) {
        err = fail(std::move(p).error());
      } else {
        o.pid = *p;
      }
      return true;
    }
    case 'R':
      o.leaveRunning = true;
      return true;
    case kExtUnixSk:
      o.extUnixSk.push_back(optarg != nullptr ? optarg : "");
      return true;
    case kExternal:
      o.external.push_back(optarg);
      return true;
    case kNoBpf:
      o.bpf = CollectorOptions::Bpf::None;
      return true;
    case kBpf:
      o.bpf = CollectorOptions::Bpf::FastPath;
      return true;
    default:
      return false;
  }
}

const option kCollectorLong[] = {
    {"tree", required_argument, nullptr, 't'},
    {"leave-running", no_argument, nullptr, 'R'},
    {"ext-unix-sk", optional_argument, nullptr, kExtUnixSk},
    {"external", required_argument, nullptr, kExternal},
    {"no-bpf", no_argument, nullptr, kNoBpf},
    {"bpf", no_argument, nullptr, kBpf},
};

std::vector<option> withCollector(std::initializer_list<option> more) {
  std::vector<option> v(std::begin(kCollectorLong), std::end(kCollectorLong));
  v.insert(v.end(), more);
  v.push_back({"verbosity", optional_argument, nullptr, 'v'});
  v.push_back({"help", no_argument, nullptr, 'h'});
  v.push_back({nullptr, 0, nullptr, 0});
  return v;
}

Status noExtraArgs(int argc, char** argv) {
  if (optind < argc) {
    return failMsg(std::string("unexpected argument '") + argv[optind] + "'");
  }
  return {};
}

Result<Command> helpCommand(std::string text) {
  Command c{};
  c.kind = Command::Kind::Help;
  c.helpText = std::move(text);
  return c;
}

Result<Command> parseRunDump(int argc, char** argv) {
  Command cmd{};
  cmd.kind = Command::Kind::RunDump;
  DumpOptions& d = cmd.dump;
  auto longOpts = withCollector({{"images-dir", required_argument, nullptr, 'D'},
                                 {"stream", required_argument, nullptr, kStream},
                                 {"log-file", required_argument, nullptr, 'o'}});
  Result<void> err;
  int c;
  while ((c = getopt_long(argc, argv, "t:RD:o:v::h", longOpts.data(), nullptr)) != -1) {
    if (collectorOption(c, d.collector, err)) {
      CRPIPE_TRY(err);
      continue;
    }
    switch (c) {
      case 'D':
        d.dir = optarg;
        break;
      case kStream:
        d.stream = optarg;
        break;
      case 'o':
        d.log.file = optarg;
        break;
      case 'v':
        parseVerbosity(argc, argv, d.log);
        break;
      case 'h':
        return helpCommand(runHelp());
      default:
        return failMsg("bad option for 'run dump' (see crpipe run --help)");
    }
  }
  CRPIPE_TRY(noExtraArgs(argc, argv));
  if (d.collector.pid == 0) {
    return failMsg("run dump needs -t PID");
  }
  if (d.dir.empty() == !d.stream.has_value()) {
    return failMsg("run dump needs exactly one of -D DIR and --stream FILE|-");
  }
  // As with CRIU, a relative log path is relative to the images directory.
  if (!d.log.file.empty() && d.log.file[0] != '/' && !d.dir.empty()) {
    d.log.file = d.dir + "/" + d.log.file;
  }
  return cmd;
}

Result<Command> parseRunRestore(int argc, char** argv) {
  Command cmd{};
  cmd.kind = Command::Kind::RunRestore;
  RestoreOptions& r = cmd.restore;
  static const option kOpts[] = {{"images-dir", required_argument, nullptr, 'D'},
                                 {"stream", required_argument, nullptr, kStream},
                                 {"restore-detached", no_argument, nullptr, 'd'},
                                 {"pidfile", required_argument, nullptr, kPidfile},
                                 {"shell-job", no_argument, nullptr, kShellJob},
                                 {"check-only", no_argument, nullptr, kCheckOnly},
                                 {"stop-before", required_argument, nullptr, kStopBefore},
                                 {"unix-name-map", required_argument, nullptr, kUnixNameMap},
                                 {"ext-unix-sk", optional_argument, nullptr, kExtUnixSk},
                                 {"ext-unix-sk-dead", required_argument, nullptr, kExtUnixSkDead},
                                 {"inherit-fd", required_argument, nullptr, kInheritFd},
                                 {"log-file", required_argument, nullptr, 'o'},
                                 {"verbosity", optional_argument, nullptr, 'v'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "D:do:v::h", kOpts, nullptr)) != -1) {
    switch (c) {
      case 'D':
        r.dir = optarg;
        break;
      case kStream:
        r.stream = optarg;
        break;
      case 'd':
        r.detach = true;
        break;
      case kPidfile:
        r.pidfile = optarg;
        break;
      case kShellJob:
        r.shellJob = true;
        break;
      case kCheckOnly:
        r.checkOnly = true;
        break;
      case kStopBefore:
        if (std::string(optarg) != "memory") {
          return failMsg("--stop-before: only 'memory' is supported");
        }
        r.stopBeforeMemory = true;
        break;
      case kUnixNameMap: {
        std::string m = optarg;
        auto eq = m.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == m.size()) {
          return failMsg("--unix-name-map " + m + ": expected OLD=NEW");
        }
        r.unixNameMap.emplace_back(m.substr(0, eq), m.substr(eq + 1));
        break;
      }
      case kExtUnixSk: {
        // Bare: reconnect external datagram clients by name. INO[=PATH]: reconnect the
        // (stream/seqpacket) socket INO to its dump-time peer name, or to PATH.
        const char* v = optarg != nullptr ? optarg : (optind < argc && argv[optind][0] >= '0' &&
                                                       argv[optind][0] <= '9')
                                                          ? argv[optind++]
                                                          : nullptr;
        if (v == nullptr) {
          r.extUnixSk = true;
          break;
        }
        std::string m = v;
        auto eq = m.find('=');
        char* end = nullptr;
        unsigned long ino = std::strtoul(m.c_str(), &end, 10);
        if (end == m.c_str() || (*end != '\0' && *end != '=')) {
          return failMsg("--ext-unix-sk " + m + ": expected INO[=PATH]");
        }
        r.extUnixSkInodes[static_cast<uint32_t>(ino)] =
            eq == std::string::npos ? std::string() : m.substr(eq + 1);
        break;
      }
      case kExtUnixSkDead: {
        char* end = nullptr;
        unsigned long ino = std::strtoul(optarg, &end, 10);
        if (end == optarg || *end != '\0') {
          return failMsg(std::string("--ext-unix-sk-dead ") + optarg + ": expected INO");
        }
        r.unixDead.insert(static_cast<uint32_t>(ino));
        break;
      }
      case kInheritFd: {
        // fd[N]:RESOURCE, as CRIU spells it.
        std::string m = optarg;
        auto close = m.find("]:");
        char* end = nullptr;
        long n = m.starts_with("fd[") ? std::strtol(m.c_str() + 3, &end, 10) : -1;
        if (n < 0 || close == std::string::npos || end != m.c_str() + close ||
            close + 2 == m.size()) {
          return failMsg("--inherit-fd " + m + ": expected fd[N]:RESOURCE");
        }
        r.inheritFds.emplace_back(static_cast<int>(n), m.substr(close + 2));
        break;
      }
      case 'o':
        r.log.file = optarg;
        break;
      case 'v':
        parseVerbosity(argc, argv, r.log);
        break;
      case 'h':
        return helpCommand(runHelp());
      default:
        return failMsg("bad option for 'run restore' (see crpipe run --help)");
    }
  }
  CRPIPE_TRY(noExtraArgs(argc, argv));
  if (r.dir.empty() == !r.stream.has_value()) {
    return failMsg("run restore needs exactly one of -D DIR and --stream FILE|-");
  }
  if (!r.log.file.empty() && r.log.file[0] != '/' && !r.dir.empty()) {
    r.log.file = r.dir + "/" + r.log.file;
  }
  return cmd;
}

Result<Command> parseStage(int argc, char** argv) {
  if (argc < 2) {
    return failMsg("stage needs one of collect, serialize, decode (see crpipe stage --help)");
  }
  std::string which = argv[1];
  if (which == "-h" || which == "--help") {
    return helpCommand(stageHelp());
  }
  Command cmd{};
  cmd.kind = Command::Kind::Stage;
  StageOptions& s = cmd.stage;
  if (which == "collect") {
    s.kind = StageOptions::Kind::Collect;
  } else if (which == "serialize") {
    s.kind = StageOptions::Kind::Serialize;
  } else if (which == "decode") {
    s.kind = StageOptions::Kind::Decode;
  } else {
    return failMsg("unknown stage '" + which + "' (collect, serialize, decode)");
  }
  auto longOpts = withCollector({{"images-dir", required_argument, nullptr, 'D'},
                                 {"input", required_argument, nullptr, 'i'},
                                 {"output", required_argument, nullptr, 'o'},
                                 {"reverse", no_argument, nullptr, kReverse},
                                 {"log", required_argument, nullptr, kLog}});
  Result<void> err;
  optind = 2;
  int c;
  bool reverse = false;
  while ((c = getopt_long(argc, argv, "t:RD:i:o:v::h", longOpts.data(), nullptr)) != -1) {
    if (s.kind == StageOptions::Kind::Collect && collectorOption(c, s.collector, err)) {
      CRPIPE_TRY(err);
      continue;
    }
    switch (c) {
      case 'D':
        s.dir = optarg;
        break;
      case 'i':
        s.in = optarg;
        break;
      case 'o':
        s.out = optarg;
        break;
      case kReverse:
        reverse = true;
        break;
      case kLog:
        s.log.file = optarg;
        break;
      case 'v':
        parseVerbosity(argc, argv, s.log);
        break;
      case 'h':
        return helpCommand(stageHelp());
      default:
        return failMsg("bad option for 'stage " + which + "' (see crpipe stage --help)");
    }
  }
  CRPIPE_TRY(noExtraArgs(argc, argv));
  switch (s.kind) {
    case StageOptions::Kind::Collect:
      if (s.collector.pid == 0 || s.out.empty()) {
        return failMsg("stage collect needs -t PID -o FILE|-");
      }
      break;
    case StageOptions::Kind::Serialize:
      if (reverse) {
        s.kind = StageOptions::Kind::SerializeReverse;
        if (s.dir.empty() || s.out.empty()) {
          return failMsg("stage serialize --reverse needs -D DIR -o FILE|-");
        }
      } else if (s.dir.empty() || s.in.empty()) {
        return failMsg("stage serialize needs -i FILE|- -D DIR");
      }
      break;
    default:
      if (s.in.empty()) {
        s.in = "-";
      }
      break;
  }
  return cmd;
}

Result<Command> parseShow(int argc, char** argv) {
  Command cmd{};
  cmd.kind = Command::Kind::Show;
  static const option kOpts[] = {{"json", no_argument, nullptr, kJson},
                                 {"text", no_argument, nullptr, kText},
                                 {"sockets", no_argument, nullptr, kSockets},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", kOpts, nullptr)) != -1) {
    switch (c) {
      case kJson:
        cmd.show.text = false;
        break;
      case kText:
        cmd.show.text = true;
        break;
      case kSockets:
        cmd.show.sockets = true;
        break;
      case 'h':
        return helpCommand(showHelp());
      default:
        return failMsg("bad option for 'show' (see crpipe show --help)");
    }
  }
  if (optind + 1 != argc) {
    return failMsg("show needs exactly one DIR or FILE");
  }
  cmd.show.path = argv[optind];
  return cmd;
}

}  // namespace

std::vector<std::string> CollectorOptions::passThrough() const {
  std::vector<std::string> out;
  if (leaveRunning) {
    out.push_back("-R");
  }
  for (const auto& e : extUnixSk) {
    out.push_back(e.empty() ? "--ext-unix-sk" : "--ext-unix-sk=" + e);
  }
  for (const auto& e : external) {
    out.push_back("--external");
    out.push_back(e);
  }
  switch (bpf) {
    case Bpf::None:
      out.push_back("--no-bpf");
      out.push_back("--no-fd-table-bpf");
      break;
    case Bpf::FastPath:
      out.push_back("--bpf");
      break;
    case Bpf::Default:
      break;
  }
  return out;
}

Result<Command> parseCommandLine(int argc, char** argv) {
  opterr = 0;  // errors come back as values
  if (argc < 2) {
    return failMsg("no command given (see crpipe --help)");
  }
  std::string cmd = argv[1];
  // Each command's options start after its words: reset getopt to argv[first option].
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    return helpCommand(mainHelp());
  }
  if (cmd == "-V" || cmd == "--version") {
    Command c{};
    c.kind = Command::Kind::Version;
    return c;
  }
  if (cmd == "run") {
    if (argc < 3 || std::strcmp(argv[2], "-h") == 0 || std::strcmp(argv[2], "--help") == 0) {
      return helpCommand(runHelp());
    }
    std::string what = argv[2];
    if (what == "dump") {
      optind = 1;
      return parseRunDump(argc - 2, argv + 2);
    }
    if (what == "restore") {
      optind = 1;
      return parseRunRestore(argc - 2, argv + 2);
    }
    return failMsg("unknown 'run " + what + "' (dump, restore)");
  }
  if (cmd == "stage") {
    return parseStage(argc - 1, argv + 1);
  }
  if (cmd == "show") {
    optind = 1;
    return parseShow(argc - 1, argv + 1);
  }
  if (cmd == "check") {
    Command c{};
    c.kind = Command::Kind::Check;
    return c;
  }
  return failMsg("unknown command '" + cmd + "' (see crpipe --help)");
}

std::string mainHelp() {
  return R"(usage: crpipe COMMAND [OPTIONS]

Checkpoint and restore Linux process trees, unix sockets above all.

commands:
  run dump -t PID -D DIR [options]   freeze, collect and write images (see run --help)
  run dump -t PID --stream FILE|-    write the collector's stream instead of images
  run restore -D DIR [options]       restore a tree (see run --help)
  run restore --stream FILE|-        restore from the collector's stream
  stage collect -t PID -o FILE|-     run the collector alone, writing its stream
  stage serialize -i FILE|- -D DIR   stream -> image directory
  stage serialize --reverse -D DIR -o FILE|-
                                     image directory -> stream
  stage decode [-i FILE|-]           print every message of a stream readably
  show [--json|--text] DIR|FILE      decode image files (JSON by default, like crit show)
  show --sockets DIR                 the unix socket graph of a dump
  check                              which kernel features this machine has
  --help, --version

`crpipe COMMAND --help` tells more about each.
)";
}

std::string runHelp() {
  return R"(usage: crpipe run dump -t PID (-D DIR | --stream FILE|-) [options]
       crpipe run restore (-D DIR | --stream FILE|-) [-d] [--pidfile FILE] [--shell-job]
                          [--check-only | --stop-before memory] [--unix-name-map OLD=NEW]
                          [--ext-unix-sk[=INO[=PATH]]] [--ext-unix-sk-dead INO]
                          [--inherit-fd fd[N]:RESOURCE] [-v N] [-o LOG]

run dump starts crpipe-collector and crpipe-serializer joined by unix sockets. The
collector freezes every thread of the tree under PID and streams its state; the
serializer writes the images into DIR/.crpipe-partial-XXXXXX and moves them into DIR
only once the stream is complete and on disk. Then, like CRIU, the tree is killed, or
left running with -R. On any failure, or on Ctrl-C, the tree is released running and
untouched, the failing stage's message is printed, and the exit status is non-zero.

options:
  -t, --tree PID          root of the tree to dump
  -D, --images-dir DIR    where the images go
  --stream FILE|-         write the collector's stream (to stdout with -) instead of
                          images; the tree is released running afterwards
  -R, --leave-running     let the tree go on after a successful dump
  --ext-unix-sk[=INO]     allow unix sockets whose peer is outside the tree (datagram
                          clients, or the socket INO of any type); repeatable
  --external RES          treat RES as external: unix[INO], pipe[INO],
                          file[MNT_ID:INODE]; repeatable
  --no-bpf                read every fd with syscalls: no BPF iterator for large fd
                          tables either (the embryo reader, for data of connections
                          not yet accepted, still runs where there are some)
  --bpf                   read fds and unix sockets through the BPF fast path
  -v[N], -v N             log level as CRIU's (0 errors .. 4 everything; default 2)
  -o, --log-file LOG      every stage logs into LOG (truncated first); a relative
                          LOG is relative to DIR, as with CRIU

Progress goes to stderr: one updating line on a terminal, plain lines otherwise.

run restore reads the images through crpipe-serializer (or the stream, front to back,
never seeking), plans, and starts one crpipe-restorer per task with the task's original
pid, in its session and process group, then drives them through the restore phases:
fork-tree, group-leaders, group-members, bind-listen, connect, accept, refill-queues
(unix sockets), open-files, share-fds, memory (every mapping and page, by syscall
injection), resume (registers, signals, threads; all tasks at once). Without -d crpipe
waits for the root task and exits with its status. A failure kills everything it
created and names the task and the resource; the images are never changed. A pid that
is still taken is refused (a zombie of the dumped tree is waited for, a few seconds at
most).

options:
  -D, --images-dir DIR    the images to restore
  --stream FILE|-         read the collector's stream instead (`run dump --stream`)
  --check-only            development mode: after share-fds, check every restored task
                          from /proc (pid, parent, group, session, every fd's file,
                          position, flags, owner, pipe data, shared descriptions), print
                          what was found as JSON on stdout, kill the tree, exit 0 if it
                          all matches the images
  --stop-before memory    development mode: restore up to share-fds, then leave every
                          restored task alive, blocked in pause() with only its own fds
                          (the restorer's channel and log closed), print
                          "restored root pid N" on stdout and exit 0; the caller dumps or
                          inspects the tree and kills it
  --shell-job             the root task may belong to a session and group outside the
                          dump: it joins crpipe's
  --unix-name-map OLD=NEW rewrite a unix socket name on restore (bind, connect and the
                          sender addresses of queued datagrams); a path or @abstract name,
                          or a directory prefix ending in '/'; repeatable
  --ext-unix-sk           reconnect datagram sockets whose peer was outside the tree to
                          the peer's dump-time name
  --ext-unix-sk=INO[=PATH] reconnect socket INO (any type) whose peer was outside the tree
                          to the peer's dump-time name, or to PATH
  --ext-unix-sk-dead INO  restore socket INO, whose peer was outside the tree, as a
                          connection whose peer has gone (reads get EOF, writes EPIPE)
  --inherit-fd fd[N]:RES  take RES from crpipe's fd N instead of creating it:
                          socket:[INO] (--external unix[INO]), file[MNT_ID:INODE],
                          pipe:[INO]; an option that matches nothing is an error
  -d, --restore-detached  leave the restored tree running and exit
  --pidfile FILE          write the root's pid there once it runs
  -v[N], -o LOG           as for run dump
)";
}

std::string stageHelp() {
  return R"(usage: crpipe stage collect -t PID -o FILE|- [-R] [--ext-unix-sk[=INO]]...
                    [--external RES]... [-v N] [--log FILE]
       crpipe stage serialize -i FILE|- -D DIR [-v N] [--log FILE]
       crpipe stage serialize --reverse -D DIR -o FILE|-
       crpipe stage decode [-i FILE|-]

Each runs one stage binary (crpipe-collector or crpipe-serializer, found next to crpipe
first, then on $PATH) on a stream file, so a dump can be taken apart and debugged:

  crpipe stage collect -t 1234 -o dump.stream -R
  crpipe stage decode -i dump.stream
  crpipe stage serialize -i dump.stream -D images/
  crpipe stage serialize --reverse -D images/ -o again.stream   (byte-identical images)

A collector run alone releases the tree unless its output is a regular file it synced
and -R was not given; then it kills the tree, as a dump does.
)";
}

std::string showHelp() {
  return R"(usage: crpipe show [--json|--text] DIR|FILE
       crpipe show --sockets DIR

Decodes image files as CRIU's `crit show` does: for each file
  {"magic": "FILES", "entries": [ {...}, ... ]}
and for a directory one object keyed by file name. Field names are those of the .proto
files, enums print by name. bytes fields (unix socket names, datagram sender addresses)
print as JSON strings with one code point per byte, bytes outside printable ASCII as
\u00XX: an abstract name reads "\u0000name"; decode the string as Latin-1 to get the
exact bytes. Raw data stored after an entry (pipes-data, fifo-data, sk-queues) is shown
as "extra": "<hex>" on that entry; raw images (pages-N.img) show their size only.
--text prints protobuf text format instead.

--sockets prints the unix socket graph of a dump: each socket's inode, type, state and
name, the tasks and fds that hold it, its peer and who holds that, queued messages and
bytes, not-yet-accepted connections, and external flags.

A truncated or corrupt file is refused with its name and the byte offset.
)";
}

}  // namespace crpipe
