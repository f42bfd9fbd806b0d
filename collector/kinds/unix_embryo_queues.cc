// Loads the embedded iter/unix program (unix_embryo_bpf.bpf.c), runs it pass after pass
// until every listener's embryos are emitted, and rebuilds the queues from its records.
#include "collector/kinds/unix_embryo_queues.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string_view>
#include <thread>
#include <tuple>

#include "collector/bpf_util.h"
#include "collector/kinds/unix_embryo_bpf_abi.h"
#include "collector/kinds/unix_embryo_probe.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

extern const unsigned char kUnixEmbryoBpfObject[];  // generated from the .bpf.o at build time
extern const std::size_t kUnixEmbryoBpfObjectSize;

namespace {

const std::string kUnavailable = "BPF unavailable: ";
constexpr int kMaxPasses = 1 << 20;  // each pass moves >= ~30 KiB or one listener forward


// libbpf reports through one process-wide callback; while we load, its warnings (the
// verifier's verdict on a failed load) are kept to explain the error.
std::string* gLibbpfLog = nullptr;
int keepLibbpfLog(libbpf_print_level level, const char* fmt, va_list ap) {
  if (gLibbpfLog == nullptr || level == LIBBPF_DEBUG) {
    return 0;
  }
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  gLibbpfLog->append(line);
  if (gLibbpfLog->size() > 2048) {
    gLibbpfLog->erase(0, gLibbpfLog->size() - 2048);
  }
  return 0;
}

class LibbpfLogScope {
 public:
  explicit LibbpfLogScope(std::string* sink) {
    gLibbpfLog = sink;
    old_ = libbpf_set_print(keepLibbpfLog);
  }
  ~LibbpfLogScope() {
    libbpf_set_print(old_);
    gLibbpfLog = nullptr;
  }
  LibbpfLogScope(const LibbpfLogScope&) = delete;
  LibbpfLogScope& operator=(const LibbpfLogScope&) = delete;

 private:
  libbpf_print_fn_t old_;
};

// The most telling line of libbpf's output: its last one that is not the generic
// "failed to load object" (on a verifier rejection, the verifier's complaint).
std::string lastLine(const std::string& log) {
  std::string best;
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    std::string line = log.substr(start, end == std::string::npos ? end : end - start);
    start = end == std::string::npos ? log.size() : end + 1;
    if (line.rfind("libbpf: ", 0) == 0) {
      line.erase(0, 8);
    }
    if (!line.empty() && line.find("failed to load object") == std::string::npos) {
      best = line;
    }
  }
  return best.empty() ? "" : " (libbpf: " + best + ")";
}

}  // namespace

// The loaded program, its maps and its iterator link; closed and detached on destruction.
struct EmbryoIterator {
  BpfObjectPtr obj;
  BpfLinkPtr link;
  int listenersFd = -1;  // owned by obj
  int configFd = -1;

  static Result<EmbryoIterator> load(size_t listeners);
  // Writes the config, creates a fresh iterator (it walks the netns of the calling thread)
  // and reads it to the end.
  Result<std::string> pass(const crp_emb_config& cfg) const;
};

Result<EmbryoIterator> EmbryoIterator::load(size_t listeners) {
  if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return failSys(kUnavailable + "the kernel has no BTF (/sys/kernel/btf/vmlinux)");
  }
  std::string log;
  LibbpfLogScope logScope(&log);
  EmbryoIterator it;
  it.obj.reset(bpf_object__open_mem(kUnixEmbryoBpfObject, kUnixEmbryoBpfObjectSize, nullptr));
  if (!it.obj) {
    return failSys(kUnavailable + "cannot open the embedded BPF object" + lastLine(log));
  }
  bpf_map* listenersMap = bpf_object__find_map_by_name(it.obj.get(), "listeners");
  bpf_map* configMap = bpf_object__find_map_by_name(it.obj.get(), "config");
  bpf_program* prog = bpf_object__find_program_by_name(it.obj.get(), "dump_unix_embryos");
  if (listenersMap == nullptr || configMap == nullptr || prog == nullptr) {
    return failMsg("the embedded BPF object lacks its maps or program");
  }
  bpf_map__set_max_entries(listenersMap, listeners == 0 ? 1 : static_cast<uint32_t>(listeners));
  if (int err = bpf_object__load(it.obj.get()); err != 0) {
    std::string why = (err == -EPERM || err == -EACCES)
                          ? "loading a BPF iterator needs CAP_BPF and CAP_PERFMON (or "
                            "CAP_SYS_ADMIN)"
                          : "the kernel refused the unix socket iterator (it needs Linux >= "
                            "5.17 with BTF and built-in AF_UNIX)";
    return fail(Error::sys(-err, kUnavailable + why + lastLine(log)));
  }
  it.link.reset(bpf_program__attach_iter(prog, nullptr));
  if (!it.link) {
    return failSys(kUnavailable + "cannot attach the iter/unix program" + lastLine(log));
  }
  it.listenersFd = bpf_map__fd(listenersMap);
  it.configFd = bpf_map__fd(configMap);
  return it;
}

Result<std::string> EmbryoIterator::pass(const crp_emb_config& cfg) const {
  uint32_t zero = 0;
  if (bpf_map_update_elem(configFd, &zero, &cfg, BPF_ANY) != 0) {
    return failSys("bpf_map_update_elem(config)");
  }
  UniqueFd fd(bpf_iter_create(bpf_link__fd(link.get())));
  if (!fd.valid()) {
    return failSys("bpf_iter_create");
  }
  std::string out;
  std::string buf(64 * 1024, '\0');
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return failSys("read of the unix socket iterator");
    }
    if (n == 0) {
      return out;
    }
    out.append(buf.data(), static_cast<size_t>(n));
  }
}

namespace {

using MsgKey = std::tuple<uint32_t, uint32_t, uint32_t>;  // listener, embryo, message

struct Collected {
  std::map<uint32_t, crp_emb_cursor> cursors;  // per listener: where the next pass starts
  std::map<std::pair<uint32_t, uint32_t>, EmbryoQueue> queues;
  std::map<MsgKey, uint32_t> lengths;  // what each message's data must add up to
  std::string calibProblem;            // why paged data cannot be read, if it cannot
};

std::string errorText(const crp_emb_rec& r, const std::string& calibProblem) {
  switch (r.arg[0]) {
    case CRP_ERR_TOO_MANY_EMBRYOS:
      return "more than " + std::to_string(CRP_EMB_MAX_EMBRYOS) + " pending connections";
    case CRP_ERR_TOO_MANY_MSGS:
      return "more than " + std::to_string(CRP_EMB_MAX_MSGS) + " queued messages";
    case CRP_ERR_NO_CALIB:
      return kUnavailable + "the data sits in page fragments, whose kernel addresses could " +
             "not be found: " + calibProblem;
    case CRP_ERR_UNSUPPORTED:
      return "unsupported skb layout (" + std::to_string(r.arg[1]) + ")";
    case CRP_ERR_LOOP:
      return "iterator step bound exhausted";
    default:
      return "kernel read failed (" + std::to_string(r.arg[1]) + "): queue changed under the walk?";
  }
}

// Applies one pass's records; `seen` gets every listener the pass reported on.
Status applyPass(std::string_view out, Collected& c, std::set<uint32_t>& seen) {
  size_t pos = 0;
  while (pos < out.size()) {
    crp_emb_rec r;
    if (out.size() - pos < sizeof r) {
      return failMsg("unix socket iterator: truncated record");
    }
    std::memcpy(&r, out.data() + pos, sizeof r);
    pos += sizeof r;
    std::string where = "listening unix socket ino " + std::to_string(r.listener_ino) +
                        ": pending connection #" + std::to_string(r.embryo_idx);
    seen.insert(r.listener_ino);
    auto q = c.queues.find({r.listener_ino, r.embryo_idx});
    switch (r.type) {
      case CRP_REC_EMBRYO: {  // repeated when a pass resumes inside this embryo
        EmbryoQueue& e = c.queues[{r.listener_ino, r.embryo_idx}];
        e.listenerIno = r.listener_ino;
        e.acceptIndex = r.embryo_idx;
        e.embryoIno = r.arg[0];
        e.peerIno = r.arg[1];
        e.shutdown = static_cast<uint8_t>(r.arg[2]);
        break;
      }
      case CRP_REC_PEERCRED: {
        if (q == c.queues.end()) {
          return failMsg(where + ": credentials before its connection record");
        }
        q->second.hasPeerCred = r.arg[0] != 0;
        q->second.peerPid = r.arg[1];
        q->second.peerUid = r.arg[2];
        q->second.peerGid = r.arg[3];
        break;
      }
      case CRP_REC_MSG:
      case CRP_REC_DATA: {
        if (q == c.queues.end()) {
          return failMsg(where + ": message before its connection record");
        }
        auto& msgs = q->second.messages;
        if (r.type == CRP_REC_MSG && r.msg_idx == msgs.size()) {
          msgs.emplace_back();
        }
        if (r.msg_idx + 1 != msgs.size()) {
          return failMsg(where + ": message #" + std::to_string(r.msg_idx) + " out of order");
        }
        EmbryoMessage& m = msgs.back();
        MsgKey key{r.listener_ino, r.embryo_idx, r.msg_idx};
        if (r.type == CRP_REC_MSG) {
          c.lengths[key] = r.arg[0];
          m.hasRights = (r.arg[1] & CRP_MSG_RIGHTS) != 0;
          m.rightsCount = r.arg[2];
          m.hasCreds = (r.arg[1] & CRP_MSG_CREDS) != 0;
          m.credPid = r.arg[3];
          m.credUid = r.arg[4];
          m.credGid = r.arg[5];
          m.oob = (r.arg[1] & CRP_MSG_OOB) != 0;
          break;
        }
        uint32_t n = r.arg[1];
        if (out.size() - pos < n || m.data.size() != r.arg[0] ||
            m.data.size() + n > c.lengths[key]) {
          return failMsg(where + ": message #" + std::to_string(r.msg_idx) + ": bad data record");
        }
        m.data.append(out.data() + pos, n);
        pos += n;
        break;
      }
      case CRP_REC_MORE:
        c.cursors[r.listener_ino] = {r.embryo_idx, r.msg_idx, r.arg[0], 0};
        break;
      case CRP_REC_END:
        c.cursors[r.listener_ino].done = 1;
        break;
      case CRP_REC_ERROR:
        return failMsg(where + ", message #" + std::to_string(r.msg_idx) + ": " +
                       errorText(r, c.calibProblem));
      case CRP_REC_CALIB:
        break;
      default:
        return failMsg("unix socket iterator: unknown record type " + std::to_string(r.type));
    }
  }
  return {};
}

bool before(const crp_emb_cursor& a, const crp_emb_cursor& b) {
  return std::tie(a.embryo_idx, a.msg_idx, a.offset) < std::tie(b.embryo_idx, b.msg_idx, b.offset);
}

// Runs in the thread whose netns is the one to walk.
Result<std::vector<EmbryoQueue>> walk(const EmbryoIterator& it,
                                      const std::set<uint32_t>& listenerInos) {
  Collected c;
  c.calibProblem = calibrateEmbryoIterator([&](const crp_emb_config& cfg) { return it.pass(cfg); });
  for (uint32_t ino : listenerInos) {
    c.cursors[ino] = {0, 0, 0, 0};
    if (bpf_map_update_elem(it.listenersFd, &ino, &c.cursors[ino], BPF_ANY) != 0) {
      return failSys("bpf_map_update_elem(listeners)");
    }
  }
  for (int passNo = 0;; ++passNo) {
    if (passNo == kMaxPasses) {
      return failMsg("unix socket iterator: too many passes");
    }
    crp_emb_config cfg{};
    cfg.mode = CRP_MODE_DUMP;
    auto out = it.pass(cfg);
    if (!out) {
      return fail(std::move(out).error());
    }
    auto previous = c.cursors;
    std::set<uint32_t> seen;
    CRPIPE_TRY(applyPass(*out, c, seen));
    bool pending = false;
    for (auto& [ino, cur] : c.cursors) {
      if (previous[ino].done) {
        continue;
      }
      if (!seen.contains(ino)) {
        cur.done = 1;  // not a listening unix socket of this namespace: nothing to report
      } else if (!cur.done && !before(previous[ino], cur)) {
        return failMsg("listening unix socket ino " + std::to_string(ino) +
                       ": the iterator made no progress");
      }
      pending = pending || !cur.done;
      if (bpf_map_update_elem(it.listenersFd, &ino, &cur, BPF_ANY) != 0) {
        return failSys("bpf_map_update_elem(listeners)");
      }
    }
    if (!pending) {
      break;
    }
  }
  std::vector<EmbryoQueue> result;
  for (auto& [key, queue] : c.queues) {
    for (uint32_t m = 0; m < queue.messages.size(); ++m) {
      if (queue.messages[m].data.size() != c.lengths[{key.first, key.second, m}]) {
        return failMsg("listening unix socket ino " + std::to_string(key.first) +
                       ": pending connection #" + std::to_string(key.second) + ": message #" +
                       std::to_string(m) + " incomplete");
      }
    }
    result.push_back(std::move(queue));
  }
  return result;
}

}  // namespace

Result<std::vector<EmbryoQueue>> readEmbryoQueues(const std::set<uint32_t>& listenerInos,
                                                  int netnsFd) {
  if (listenerInos.empty()) {
    return std::vector<EmbryoQueue>{};
  }
  auto it = EmbryoIterator::load(listenerInos.size());
  if (!it) {
    return fail(std::move(it).error());
  }
  if (netnsFd < 0) {
    return walk(*it, listenerInos);
  }
  // iter/unix walks the netns of the task that creates the iterator (bpf_iter_init_seq_net
  // takes current->nsproxy->net_ns), so create and read it from a thread moved there;
  // setns(CLONE_NEWNET) changes only the calling thread.
  Result<std::vector<EmbryoQueue>> result = failMsg("not run");
  std::thread worker([&] {
    if (setns(netnsFd, CLONE_NEWNET) != 0) {
      result = failSys("setns(CLONE_NEWNET) into the dumped network namespace");
      return;
    }
    result = walk(*it, listenerInos);
  });
  worker.join();
  return result;
}

}  // namespace crpipe::collector
