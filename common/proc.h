#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace crpipe {

// Parsers for /proc text. Each takes the file's text so units can test them on canned input.

struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
  pid_t pgid = 0;
  pid_t sid = 0;
  int ttyNr = 0;
  uint64_t flags = 0;
  uint64_t startTime = 0;  // clock ticks after boot
};
Result<ProcStat> parseProcStat(std::string_view text);

// /proc/PID/fdinfo/N
struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;  // open flags in the kernel's octal, O_CLOEXEC included
  int mntId = -1;
  uint64_t ino = 0;
};
Result<FdInfo> parseFdInfo(std::string_view text);

// "1 2 3\n" (task/TID/children) or a directory listing's numbers.
std::vector<pid_t> parsePidList(std::string_view text);

// The value of one "Key:\tvalue" line of /proc/PID/status (blanks around it dropped), or
// nothing when the file has no such line.
std::optional<std::string_view> procStatusField(std::string_view status, std::string_view key);

// FDSize of /proc/PID/status: how many fds the task's table has room for (0: unknown).
size_t procFdTableSize(pid_t pid);

// Reads a small /proc file whole; the error names the path.
// /proc/PID/limits: soft and hard limit of each resource, in resource order (RLIMIT_CPU
// first); "unlimited" is RLIM_INFINITY. Readable by root for any task, where prlimit() on
// a task of another uid needs CAP_SYS_RESOURCE.
struct ProcLimit {
  uint64_t cur = 0;
  uint64_t max = 0;
};
Result<std::vector<ProcLimit>> parseProcLimits(std::string_view text);

Result<std::string> readProcFile(const std::string& path);
// Numeric entries of a /proc directory (task/, fd/), sorted.
Result<std::vector<int>> listNumericDir(const std::string& path);
// readlink() into a string.
Result<std::string> readLink(const std::string& path);

// Whether this process is in the initial user namespace (uid_map and gid_map map all of
// 0..4294967294 onto themselves): only there are the uids and gids the kernel keeps (what a
// BPF iterator reads) the ones syscalls report.
bool inInitialUserNs();

}  // namespace crpipe
