#include "collector/dump.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <set>

#include "collector/fast/fast_snapshot.h"
#include "collector/fdtable/fd_table.h"
#include "collector/file_table.h"
#include "collector/grab_fd.h"
#include "collector/kinds/registry.h"
#include "collector/process_tree.h"
#include "collector/task/task_state.h"
#include "common/fd_limit.h"
#include "common/image_stream.h"
#include "common/proc.h"
#include "protos/inventory.pb.h"

namespace crpipe::collector {

namespace {

Status writeHello(StageWriter& out, pid_t root) {
  capnp::MallocMessageBuilder mb;
  auto h = mb.initRoot<proto::Message>().initHello();
  h.setRole(proto::Hello::Role::COLLECTOR);
  h.setProtocolVersion(proto::PROTOCOL_VERSION);
  h.setToolVersion(CRPIPE_VERSION);
  h.setRootPid(root);
  return out.write(mb);
}

images::InventoryEntry makeInventory(const DumpOptions& opts) {
  images::InventoryEntry inv;
  inv.set_img_version(kImagesVersion);
  // fdinfo-<pid>.img per task: crpipe has no core images yet to carry files ids.
  inv.set_fdinfo_per_id(false);
  auto* ext = inv.mutable_crpipe();
  ext->set_tool_version(CRPIPE_VERSION);
  ext->set_root_pid(static_cast<uint32_t>(opts.root));
  utsname u{};
  if (::uname(&u) == 0) {
    ext->set_kernel_release(u.release);
  }
  if (opts.extUnixSk) {
    ext->add_dump_options("ext-unix-sk");
  }
  for (uint32_t ino : opts.extUnixSkInodes) {
    ext->add_dump_options("ext-unix-sk=" + std::to_string(ino));
  }
  for (const auto& e : opts.externals) {
    ext->add_dump_options("external=" + e);
  }
  return inv;
}

// A unix socket the fast path described: everything grabFd would read, without a syscall.
// The unix kind takes a duplicate itself if it needs one (a bound name, a queue to peek).
OpenFile openFileFromFast(const FastFd& r, int pidfd, pid_t pid) {
  OpenFile f;
  f.pid = pid;
  f.fd = static_cast<int>(r.fd);
  f.fast = &r;
  f.pidfd = pidfd;
  f.st.st_mode = r.mode;
  f.st.st_ino = r.ino;
  // The kernel's dev_t is MAJOR << 20 | MINOR; stat(2) encodes it for user space.
  f.st.st_dev = makedev(r.dev >> 20, r.dev & 0xfffff);
  f.link = "socket:[" + std::to_string(r.ino) + "]";
  // What /proc/PID/fdinfo/N would print: f_flags with O_CLOEXEC from the fd table.
  f.fdinfo.pos = r.pos;
  f.fdinfo.flags = r.f_flags | ((r.flags & CRP_FD_CLOEXEC) != 0 ? O_CLOEXEC : 0);
  f.fdinfo.mntId = r.mnt_id;
  f.fdinfo.ino = r.ino;
  return f;
}

bool fastUnixSocket(const FastFd& r) {
  return (r.flags & CRP_FD_SOCKET) != 0 && r.sk_family == AF_UNIX;
}

Status collectOneFd(DumpContext& ctx, uint32_t imgIdx, OpenFile f) {
  const int fd = f.fd;
  const bool cloexec = (f.fdinfo.flags & O_CLOEXEC) != 0;
  auto known = ctx.files.add(ctx, std::move(f));
  if (!known) {
    return fail(std::move(known).error());
  }
  images::FdinfoEntry fe;
  fe.set_id(known->id);
  fe.set_flags(cloexec ? FD_CLOEXEC : 0);
  fe.set_type(known->type);
  fe.set_fd(static_cast<uint32_t>(fd));
  return ctx.out.entry(imgIdx, fe);
}

// Below this many fds a task's fds are grabbed in line: a thread costs more than it saves.
constexpr size_t kPrefetchFrom = 64;
// A task whose fd table has room for this many fds (it held more than half as many at some
// point) has its table read by the BPF iterator (FdTableReader) instead of /proc: loading
// costs ~5 ms (a light skeleton), /proc ~7 us an fd, the iterator ~1 us.
constexpr size_t kFdTableBpfFrom = 1024;

// The fd-table iterator, loaded the first time a task has a table that large; where it
// cannot load, /proc is used and the log says why, once.
class FdTableSource {
 public:
  explicit FdTableSource(bool enabled) : enabled_(enabled) {}
  const FdTableReader* get(Log& log) {
    if (!tried_) {
      tried_ = true;
      if (!enabled_) {
        log.info("fd tables: read through /proc (--no-fd-table-bpf)");
        return nullptr;
      }
      const auto start = std::chrono::steady_clock::now();
      auto r = FdTableReader::load();
      if (r) {
        reader_ = std::move(*r);
        log.debug("fd tables: read by a BPF iterator (loaded in %.1f ms)", msSince(start));
      } else {
        log.info("fd tables: read through /proc (%s)", r.error().str().c_str());
      }
    }
    return reader_.get();
  }

 private:
  bool enabled_;
  bool tried_ = false;
  std::unique_ptr<FdTableReader> reader_;
};


Status collectFds(DumpContext& ctx, const FrozenProcess& p, int pidfd, ProgressSink& progress,
                  uint64_t& done, FdTableSource& tables) {
  auto dirs = openTaskProcDirs(p.pid);
  if (!dirs) {
    return fail(std::move(dirs).error());
  }
  auto img = ctx.out.image("fdinfo-" + std::to_string(p.pid) + ".img");
  if (!img) {
    return fail(std::move(img).error());
  }
  auto tick = [&]() {
    if (++done % 1024 == 0) {
      progress.progress("fds", done, 0, "pid " + std::to_string(p.pid));
    }
  };
  if (const auto* fast = ctx.fast != nullptr ? ctx.fast->fdsOf(p.pid) : nullptr) {
    // The fast path listed every fd; unix sockets need nothing more here, other kinds are
    // read the syscall way (they need a duplicate and the link text anyway).
    for (const FastFd& r : *fast) {
      if (fastUnixSocket(r)) {
        CRPIPE_TRY(collectOneFd(ctx, *img, openFileFromFast(r, pidfd, p.pid)));
      } else {
        auto f = grabFd(pidfd, *dirs, p.pid, static_cast<int>(r.fd));
        if (!f) {
          return fail(std::move(f).error());
        }
        f->pidfd = pidfd;
        CRPIPE_TRY(collectOneFd(ctx, *img, std::move(*f)));
      }
      tick();
    }
    return {};
  }
  std::vector<FdTableReader::Fd> known;
  Result<std::vector<int>> fds = std::vector<int>{};
  const FdTableReader* reader =
      procFdTableSize(p.pid) >= kFdTableBpfFrom ? tables.get(ctx.log) : nullptr;
  if (reader != nullptr) {
    const auto start = std::chrono::steady_clock::now();
    auto table = reader->read(p.pid, pidfd);
    if (table) {
      ctx.log.debug("pid %d: %zu fds read by the fd-table iterator in %.1f ms", p.pid,
                    table->size(), msSince(start));
      fds->reserve(table->size());
      for (const auto& f : *table) {
        fds->push_back(f.fd);
      }
      known = std::move(*table);
    } else {
      // /proc can say it all too, only slower.
      ctx.log.warn("pid %d: %s; its fds are read through /proc", p.pid,
                   table.error().str().c_str());
      reader = nullptr;
    }
  }
  if (reader == nullptr) {
    fds = listNumericDir("/proc/" + std::to_string(p.pid) + "/fd");
  }
  if (!fds) {
    return fail(std::move(fds).error());
  }
  if (fds->size() < kPrefetchFrom) {
    for (size_t i = 0; i < fds->size(); ++i) {
      auto f = grabFd(pidfd, *dirs, p.pid, (*fds)[i], i < known.size() ? &known[i] : nullptr);
      if (!f) {
        return fail(std::move(f).error());
      }
      CRPIPE_TRY(collectOneFd(ctx, *img, std::move(*f)));
      tick();
    }
    return {};
  }
  // Many fds: a second thread grabs them ahead of the kinds (grab_fd.h).
  FdPrefetcher ahead(pidfd, *dirs, p.pid, std::move(*fds),
                     [&files = ctx.files](OpenFile& f, ReadAheadContext& ahead) {
                       files.readAhead(f, ahead);
                     },
                     std::move(known));
  for (size_t i = 0; i < ahead.size(); ++i) {
    auto f = ahead.take(i);
    if (!f) {
      return fail(std::move(f).error());
    }
    CRPIPE_TRY(collectOneFd(ctx, *img, std::move(*f)));
    tick();
  }
  return {};
}


}  // namespace

struct DumpHold::Parts {
  // In this order, so that the files (which point into the fast snapshot) go first.
  std::map<pid_t, UniqueFd> pidfds;
  std::unique_ptr<FastSnapshot> fast;
  std::unique_ptr<FileTable> files;
};

DumpHold::DumpHold() = default;
DumpHold::~DumpHold() = default;
void DumpHold::drop() { parts_.reset(); }
void DumpHold::abandon() {
  if (parts_ != nullptr && parts_->files != nullptr) {
    parts_->files->closeFiles();
  }
  (void)parts_.release();
}

class DumpHoldAccess {
 public:
  static DumpHold::Parts& parts(DumpHold& h) {
    h.parts_ = std::make_unique<DumpHold::Parts>();
    return *h.parts_;
  }
};

Result<FrozenTree> collectTree(const DumpOptions& opts, Log& log, StageWriter& data,
                               ProgressSink& progress, DumpHold& hold) {
  raiseFdLimit();  // a duplicate of every fd of the tree is held at once
  CRPIPE_TRY(writeHello(data, opts.root));
  progress.progress("freeze", 0, 0, "pid " + std::to_string(opts.root));
  auto tree = FrozenTree::freeze(opts.root, log);
  if (!tree) {
    return fail(std::move(tree).error());
  }
  progress.progress("freeze", tree->processes().size(), tree->processes().size(),
                    std::to_string(tree->threadCount()) + " threads");

  std::set<pid_t> pids;
  for (const auto& p : tree->processes()) {
    pids.insert(p.pid);
  }
  ImageEmitter out(data);
  CRPIPE_TRY(out.entryTo("inventory.img", makeInventory(opts)));
  auto pstree = describeTree(*tree);
  if (!pstree) {
    return fail(std::move(pstree).error());
  }
  for (const auto& e : *pstree) {
    CRPIPE_TRY(out.entryTo("pstree.img", e));
  }

  DumpHold::Parts& held = DumpHoldAccess::parts(hold);
  held.files = std::make_unique<FileTable>(makeFdKinds());
  FileTable& files = *held.files;
  DumpContext ctx{opts, log, out, files, pids};
  // Memory first: with --page-refs the serializer copies it while the rest is collected.
  task::TaskStateDump tasks(ctx);
  CRPIPE_TRY(tasks.memory(ctx, *tree));
  std::unique_ptr<FastSnapshot>& fast = held.fast;
  if (opts.useBpf) {
    auto snap = FastSnapshot::take(pids, log);
    if (snap) {
      fast = std::move(*snap);
      ctx.fast = fast.get();
      log.debug("fast path: %zu unix sockets read through BPF", fast->socketCount());
    } else {
      log.info("fast path off, reading every fd with syscalls: %s", snap.error().str().c_str());
    }
  }
  CRPIPE_TRY(files.prepareAll(ctx));
  // One pidfd per process for the whole dump: a kind may take a duplicate of a file the
  // fast path described at any time (OpenFile::ensureDup).
  std::map<pid_t, UniqueFd>& pidfds = held.pidfds;
  for (const auto& p : tree->processes()) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, p.pid, 0)));
    if (!pidfd.valid()) {
      return fail(Error::sys("pidfd_open pid " + std::to_string(p.pid)));
    }
    pidfds.emplace(p.pid, std::move(pidfd));
  }
  FdTableSource fdTables(ctx.opts.fdTableBpf);
  uint64_t done = 0;
  for (const auto& p : tree->processes()) {
    CRPIPE_TRY(collectFds(ctx, p, pidfds.at(p.pid).get(), progress, done, fdTables));
  }
  CRPIPE_TRY(tasks.rest(ctx, *tree, progress));
  CRPIPE_TRY(files.finishAll(ctx));
  progress.progress("fds", done, done, std::to_string(files.size()) + " open files");
  CRPIPE_TRY(out.end());
  log.info("collected %lu fds, %zu open files, %lu entries, %lu raw bytes",
           static_cast<unsigned long>(done), files.size(),
           static_cast<unsigned long>(out.entries()), static_cast<unsigned long>(out.rawBytes()));
  return tree;
}

}  // namespace crpipe::collector
