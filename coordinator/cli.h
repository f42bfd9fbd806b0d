#pragma once

#include <sys/types.h>

#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"

namespace crpipe {

// Options the collector understands, spelled as CRIU spells them.
struct CollectorOptions {
  pid_t pid = 0;
  bool leaveRunning = false;
  std::vector<std::string> extUnixSk;  // "" for a bare --ext-unix-sk, else the inode
  std::vector<std::string> external;   // unix[INO], pipe[INO], file[MNT_ID:INODE]
  // Default: the fd-table iterator for large fd tables, syscalls for the rest; --no-bpf:
  // syscalls only (but the embryo reader); --bpf: the collector's fast path.
  enum class Bpf { Default, None, FastPath };
  Bpf bpf = Bpf::Default;
  // The collector's command-line arguments for these options (not -t, --out, fds).
  std::vector<std::string> passThrough() const;
};

struct LogOptions {
  int verbosity = 2;  // CRIU's default level, which -v raises or sets
  bool verbositySet = false;
  std::string file;   // "" : stages log to stderr
  // The level every stage logs at: what -v said; else CRIU's default into a log file,
  // and on a terminal only warnings and errors (progress has its own line).
  int level() const { return verbositySet || !file.empty() ? verbosity : 1; }
};

struct DumpOptions {
  CollectorOptions collector;
  LogOptions log;
  std::string dir;
  std::optional<std::string> stream;  // --stream FILE|-: the stream instead of images
};

struct RestoreOptions {
  LogOptions log;
  std::string dir;
  std::optional<std::string> stream;  // --stream FILE|-: the collector's stream, front to back
  bool detach = false;                // -d (takes effect once issue 4 resumes the tree)
  std::string pidfile;                // --pidfile (written once the tree runs: issue 4)
  bool shellJob = false;              // --shell-job: the root joins crpipe's session/group
  bool checkOnly = false;             // --check-only: development mode, see run --help
  bool stopBeforeMemory = false;      // --stop-before memory: development mode, see run --help
  // Unix sockets (issue 5).
  std::vector<std::pair<std::string, std::string>> unixNameMap;  // --unix-name-map OLD=NEW
  bool extUnixSk = false;                                        // bare --ext-unix-sk
  std::map<uint32_t, std::string> extUnixSkInodes;  // --ext-unix-sk=INO[=PATH] ("" = dump-time name)
  std::set<uint32_t> unixDead;                      // --ext-unix-sk-dead INO
  std::vector<std::pair<int, std::string>> inheritFds;  // --inherit-fd fd[N]:RESOURCE
};

struct StageOptions {
  enum class Kind { Collect, Serialize, SerializeReverse, Decode } kind;
  CollectorOptions collector;
  LogOptions log;
  std::string in;
  std::string out;
  std::string dir;
};

struct ShowOptions {
  std::string path;
  bool text = false;     // protobuf text format instead of JSON
  bool sockets = false;  // the socket graph of an image directory
};

// What the command line asks for. Parsing never prints: help text and errors come back
// as values and main() prints them.
struct Command {
  enum class Kind { Help, Version, RunDump, RunRestore, Stage, Show, Check } kind;
  std::string helpText;  // for Help
  DumpOptions dump;
  RestoreOptions restore;
  StageOptions stage;
  ShowOptions show;
};

Result<Command> parseCommandLine(int argc, char** argv);

std::string mainHelp();
std::string runHelp();
std::string stageHelp();
std::string showHelp();

}  // namespace crpipe
