#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "protos/creds.pb.h"

// Parsers of the /proc files that describe a task's state. Each takes the file's text so
// that unit tests run them on canned input.
namespace crpipe::collector::task {

// The parts of /proc/PID/task/TID/status a dump records.
struct TaskStatus {
  images::CredsEntry creds;  // ids, groups, capabilities, no_new_privs (secbits: 0)
  uint32_t umask = 0;
  bool hasUmask = false;
  int seccomp = 0;            // 0 disabled, 1 strict, 2 filter
  char state = '?';
  uint64_t sigPnd = 0, shdPnd = 0, sigIgn = 0;  // pending (thread, process), ignored
};
Result<TaskStatus> parseTaskStatus(std::string_view text);

// The address space bounds of /proc/PID/stat (fields 26-28 and 45-52 of proc(5)).
struct MmBounds {
  uint64_t startCode = 0, endCode = 0, startStack = 0;
  uint64_t startData = 0, endData = 0, startBrk = 0;
  uint64_t argStart = 0, argEnd = 0, envStart = 0, envEnd = 0;
  uint32_t exitCode = 0;
};
Result<MmBounds> parseMmBounds(std::string_view statText);

// One mapping of /proc/PID/smaps.
struct SmapsVma {
  uint64_t start = 0, end = 0;
  uint64_t pgoff = 0;  // bytes
  uint32_t prot = 0;   // PROT_*
  bool shared = false;
  uint32_t devMajor = 0, devMinor = 0;
  uint64_t inode = 0;
  std::string path;                // "", "[heap]", "/lib/x.so", "/dev/zero (deleted)", ...
  std::vector<std::string> vmFlags;  // two-letter VmFlags ("rd", "gd", "dc", ...)

  bool hasFlag(std::string_view f) const;
};
Result<std::vector<SmapsVma>> parseSmaps(std::string_view text);

}  // namespace crpipe::collector::task
