#include "collector/fast/fast_snapshot.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include "collector/bpf_util.h"
#include "collector/kinds/unix_embryo_probe.h"
#include "common/proc.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

extern const unsigned char kFastBpfObject[];  // generated from fast_bpf.bpf.o at build time
extern const std::size_t kFastBpfObjectSize;

namespace {

const std::string kUnavailable = "BPF unavailable: ";

// libbpf prints through one process-wide callback; while the fast path loads, its last
// warning is kept to explain a failure (the verifier's complaint) instead of being printed.
std::string* gFastLibbpfLog = nullptr;
int keepLastLine(libbpf_print_level level, const char* fmt, va_list ap) {
  if (gFastLibbpfLog != nullptr && level != LIBBPF_DEBUG) {
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    std::string s(line);
    while (!s.empty() && s.back() == '\n') {
      s.pop_back();
    }
    if (!s.empty() && s.find("failed to load object") == std::string::npos) {
      *gFastLibbpfLog = s;
    }
  }
  return 0;
}

class LibbpfQuiet {
 public:
  explicit LibbpfQuiet(std::string* sink) {
    gFastLibbpfLog = sink;
    old_ = libbpf_set_print(keepLastLine);
  }
  ~LibbpfQuiet() {
    libbpf_set_print(old_);
    gFastLibbpfLog = nullptr;
  }
  LibbpfQuiet(const LibbpfQuiet&) = delete;
  LibbpfQuiet& operator=(const LibbpfQuiet&) = delete;

 private:
  libbpf_print_fn_t old_;
};

struct Loaded {
  BpfObjectPtr obj;
  bpf_program* taskFile = nullptr;
  int cfgFd = -1;
};

// Room for every fd of the tree: the sum of the fd table sizes (FDSize in status).
size_t fdTableRoom(const std::set<pid_t>& pids) {
  size_t room = 64;
  for (pid_t pid : pids) {
    room += procFdTableSize(pid);
  }
  return room;
}

Result<Loaded> loadObject(size_t room) {
  if (!inInitialUserNs()) {
    return failMsg(kUnavailable + "the collector is not in the initial user namespace");
  }
  if (::access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return failSys(kUnavailable + "the kernel has no BTF (/sys/kernel/btf/vmlinux)");
  }
  std::string last;
  LibbpfQuiet quiet(&last);
  Loaded l;
  l.obj.reset(bpf_object__open_mem(kFastBpfObject, kFastBpfObjectSize, nullptr));
  if (!l.obj) {
    return failSys(kUnavailable + "cannot open the embedded BPF object (" + last + ")");
  }
  l.taskFile = bpf_object__find_program_by_name(l.obj.get(), "fast_task_file");
  bpf_map* cfg = bpf_object__find_map_by_name(l.obj.get(), "fast_cfg");
  bpf_map* fileIds = bpf_object__find_map_by_name(l.obj.get(), "file_ids");
  bpf_map* reported = bpf_object__find_map_by_name(l.obj.get(), "reported");
  if (l.taskFile == nullptr || cfg == nullptr || fileIds == nullptr || reported == nullptr) {
    return failMsg("the embedded fast path BPF object lacks its programs or maps");
  }
  bpf_map__set_max_entries(fileIds, static_cast<uint32_t>(room));
  bpf_map__set_max_entries(reported, static_cast<uint32_t>(room));
  if (int err = bpf_object__load(l.obj.get()); err != 0) {
    std::string why = (err == -EPERM || err == -EACCES)
                          ? "loading BPF iterators needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)"
                          : "the kernel refused the fast path iterators (they need Linux >= 6.1 "
                            "with BTF)";
    return fail(Error::sys(-err, kUnavailable + why + (last.empty() ? "" : " (" + last + ")")));
  }
  l.cfgFd = bpf_map__fd(cfg);
  return l;
}

}  // namespace

const std::vector<FastFd>* FastSnapshot::fdsOf(pid_t pid) const {
  auto it = fds_.find(pid);
  return it == fds_.end() ? nullptr : &it->second;
}

const FastUnix* FastSnapshot::unixSocket(uint32_t ino) const {
  auto it = unix_.find(ino);
  return it == unix_.end() ? nullptr : &it->second;
}

Result<std::unique_ptr<FastSnapshot>> FastSnapshot::take(const std::set<pid_t>& pids, Log& log) {
  auto loaded = loadObject(fdTableRoom(pids));
  if (!loaded) {
    return fail(std::move(loaded).error());
  }
  log.debug("fast path: BPF object loaded");
  auto snap = std::make_unique<FastSnapshot>();
  int cfgFd = loaded->cfgFd;
  bpf_program* prog = loaded->taskFile;
  // One task_file pass over one process, with the given config.
  auto pass = [cfgFd, prog](pid_t pid, const crp_emb_config& cfg,
                            std::string& out) -> Status {
    uint32_t zero = 0;
    if (bpf_map_update_elem(cfgFd, &zero, &cfg, BPF_ANY) != 0) {
      return failSys("bpf_map_update_elem(fast_cfg)");
    }
    UniqueFd link(attachTaskIter(bpf_program__fd(prog), pid));
    if (!link.valid()) {
      return failSys(kUnavailable + "cannot attach the iter/task_file program to pid " +
                     std::to_string(pid));
    }
    return readIter(link.get(), out);
  };

  // Page fragments hold the bulk of any write past ~3.5 KiB; their addresses need the
  // calibration the embryo reader uses (the calib map lives in this object). The probe
  // socket is the collector's own, so a pass over the collector finds it.
  std::string calib = calibrateEmbryoIterator([&](const crp_emb_config& cfg) -> Result<std::string> {
    std::string out;
    CRPIPE_TRY(pass(::getpid(), cfg, out));
    return out;
  });
  if (!calib.empty()) {
    log.debug("fast path: paged socket data will be peeked with syscalls: %s", calib.c_str());
  }

  log.debug("fast path: calibrated");
  // Every fd of every process, and right after each unix socket's fd the socket itself.
  crp_emb_config dump{};
  dump.mode = CRP_MODE_DUMP;
  for (pid_t pid : pids) {
    std::string& buf = snap->buffers_.emplace_back();
    CRPIPE_TRY_CTX(pass(pid, dump, buf), "fast path, pid " + std::to_string(pid));
    std::vector<FastFd> fds;
    CRPIPE_TRY_CTX(parseFastRecords(buf, fds, snap->unix_), "pid " + std::to_string(pid));
    for (const FastFd& f : fds) {
      if (f.pid != static_cast<uint32_t>(pid)) {
        return failMsg("fast path: pid " + std::to_string(pid) + " iterator reported pid " +
                       std::to_string(f.pid));
      }
    }
    snap->fds_[pid] = std::move(fds);
  }
  return snap;
}

}  // namespace crpipe::collector
