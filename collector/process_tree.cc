#include "collector/process_tree.h"

#include "common/proc.h"

namespace crpipe::collector {

Result<std::vector<images::PstreeEntry>> describeTree(const FrozenTree& tree) {
  std::vector<images::PstreeEntry> out;
  for (const auto& p : tree.processes()) {
    auto text = readProcFile("/proc/" + std::to_string(p.pid) + "/stat");
    if (!text) {
      return fail(std::move(text).error());
    }
    auto st = parseProcStat(*text);
    if (!st) {
      return fail(std::move(st).error().context("/proc/" + std::to_string(p.pid) + "/stat"));
    }
    images::PstreeEntry e;
    e.set_pid(static_cast<uint32_t>(p.pid));
    e.set_ppid(static_cast<uint32_t>(p.ppid));
    e.set_pgid(static_cast<uint32_t>(st->pgid));
    e.set_sid(static_cast<uint32_t>(st->sid));
    for (pid_t t : p.threads) {
      e.add_threads(static_cast<uint32_t>(t));
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace crpipe::collector
