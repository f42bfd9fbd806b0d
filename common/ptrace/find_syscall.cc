#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/proc.h"
#include "common/ptrace/remote_mem.h"
#include "common/ptrace/syscall_session.h"

namespace crpipe::inject {

namespace {

struct ExecMap {
  uint64_t start, end;
  bool vdso;
};

// The executable mappings of /proc/PID/maps ("start-end perms offset dev inode path").
std::vector<ExecMap> execMappings(const std::string& maps) {
  std::vector<ExecMap> out;
  size_t pos = 0;
  while (pos < maps.size()) {
    size_t nl = maps.find('\n', pos);
    if (nl == std::string::npos) {
      nl = maps.size();
    }
    std::string line = maps.substr(pos, nl - pos);
    pos = nl + 1;
    unsigned long long s = 0, e = 0;
    char perms[8] = {};
    if (sscanf(line.c_str(), "%llx-%llx %7s", &s, &e, perms) != 3 || perms[2] != 'x') {
      continue;
    }
    out.push_back({s, e, line.ends_with("[vdso]")});
  }
  return out;
}

// The first 0f 05 in [start, end), reading at most `limit` bytes.
Result<uint64_t> scan(pid_t pid, uint64_t start, uint64_t end, size_t limit) {
  size_t len = static_cast<size_t>(std::min<uint64_t>(end - start, limit));
  std::string buf(len, '\0');
  auto rd = readRemote(pid, start, buf.data(), len);
  if (!rd) {
    return uint64_t{0};  // not readable: try elsewhere
  }
  for (size_t i = 0; i + 1 < len; ++i) {
    if (buf[i] == '\x0f' && buf[i + 1] == '\x05') {
      return start + i;
    }
  }
  return uint64_t{0};
}

}  // namespace

Result<uint64_t> findSyscallInsn(pid_t pid, const user_regs_struct& regs) {
  auto maps = readProcFile("/proc/" + std::to_string(pid) + "/maps");
  if (!maps) {
    return fail(std::move(maps).error());
  }
  auto execs = execMappings(*maps);
  for (const auto& m : execs) {
    if (m.vdso) {
      auto a = scan(pid, m.start, m.end, 1 << 20);
      if (a && *a != 0) {
        return *a;
      }
    }
  }
  // A thread stopped in a syscall has rip right after its `syscall` instruction.
  uint64_t ip = regs.rip;
  for (const auto& m : execs) {
    if (ip >= m.start + 2 && ip <= m.end) {
      auto a = scan(pid, ip - 2, ip, 2);
      if (a && *a != 0) {
        return *a;
      }
    }
  }
  for (const auto& m : execs) {
    auto a = scan(pid, m.start, m.end, 4 << 20);
    if (a && *a != 0) {
      return *a;
    }
  }
  return failMsg("pid " + std::to_string(pid) +
                 ": no syscall instruction in any executable mapping");
}

}  // namespace crpipe::inject
