#include "collector/kinds/unix_kind.h"

#include <fcntl.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>

#include "collector/fast/fast_snapshot.h"
#include "collector/file_table.h"
#include "collector/kinds/unix_fast.h"
#include "collector/kinds/unix_name.h"
#include "collector/kinds/unix_queue.h"
#include "collector/kinds/unix_sockopts.h"
#include "common/proc.h"

namespace crpipe::collector {

namespace {

Result<uint64_t> netnsInode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(Error::sys("stat " + path));
  }
  return static_cast<uint64_t>(st.st_ino);
}

// A path name as sock_diag gives it ends with the NUL the kernel stored at bind.
std::string pathOf(const std::string& name) { return std::string(name.c_str()); }

// An OpenFile for a file that arrived in a peeked SCM_RIGHTS message: the collector
// holds the only descriptor, so /proc/self tells what it is.
Result<OpenFile> openFileFromPeek(UniqueFd fd) {
  OpenFile of;
  std::string n = std::to_string(fd.get());
  if (::fstat(fd.get(), &of.st) != 0) {
    return fail(Error::sys("fstat of a file in a queued message"));
  }
  auto link = readLink("/proc/self/fd/" + n);
  if (!link) {
    return fail(std::move(link).error());
  }
  of.link = *link;
  auto info = readProcFile("/proc/self/fdinfo/" + n);
  if (!info) {
    return fail(std::move(info).error());
  }
  auto parsed = parseFdInfo(*info);
  if (!parsed) {
    return fail(std::move(parsed).error());
  }
  of.fdinfo = *parsed;
  // MSG_CMSG_CLOEXEC set this on our copy; it says nothing about the file itself.
  of.fdinfo.flags &= ~static_cast<uint32_t>(O_CLOEXEC);
  of.dup = std::move(fd);
  of.pid = 0;
  of.fd = -1;
  return of;
}

using PeekedQueue = Result<std::vector<PeekedMessage>>;

// What readAhead found on the fd-grabbing thread: a socket's family and, for a unix
// socket, its options and owner (or why they could not be read).
struct UnixAhead {
  int domain = -1;
  std::optional<Result<UnixSockOpts>> opts;
  std::optional<Result<images::FownEntry>> fown;
  // The receive queue, peeked where the fd-table iterator gave the socket's type, state
  // and queue length (empty without a peek when it counted nothing). Shared: std::any
  // holds copyable values only, and the files peeked out of the queue are not.
  std::shared_ptr<PeekedQueue> queue;
};

const UnixAhead* aheadOf(const OpenFile& f) { return std::any_cast<UnixAhead>(&f.ahead); }

// What readAhead read, into `known` unless another source answered already, or its error.
template <typename T>
Status takeAhead(const std::optional<Result<T>>& ahead, std::optional<T>& known,
                 const std::string& where) {
  if (!ahead || known) {
    return {};
  }
  if (!*ahead) {
    return fail(Error(ahead->error()).context(where));
  }
  known = **ahead;
  return {};
}

// Whether a socket's receive queue holds data to record: a datagram socket's always; a
// stream or seqpacket socket's once connected (recvmsg on an unconnected one is EINVAL; a
// connection whose peer closed stays established, with its data).
bool holdsQueue(int type, int state) { return type == SOCK_DGRAM || state == TCP_ESTABLISHED; }

// The queue of a socket the fd-table iterator described, peeked on the grabbing thread;
// nothing where collect() reads it itself. Only for a socket this fd alone holds: peeks of
// one socket must not overlap (they toggle SO_PASSCRED and SO_PEEK_OFF), and a second peek
// of a datagram queue no longer sees the zero-length messages the first one passed.
std::shared_ptr<PeekedQueue> queueAhead(int fd, const FdTableReader::Fd& t,
                                        const UnixSockOpts& o, ReadAheadContext& ctx) {
  if (!t.usk || !t.sole || !t.queuedSkbs || !holdsQueue(static_cast<int>(t.usk->sk_type), t.state)) {
    return nullptr;
  }
  const int type = static_cast<int>(t.usk->sk_type);
  if (*t.queuedSkbs == 0) {
    return std::make_shared<PeekedQueue>(std::vector<PeekedMessage>{});
  }
  if (type == SOCK_STREAM && o.peekOff == -1 && t.queuedFrom && t.queuedBytes &&
      ctx.initialUserNs) {
    // One sender, no files: one peek, no SO_PASSCRED toggling (credentials as the
    // iterator read them: kernel ids, the same in the initial user namespace).
    auto plain = peekPlainStream(fd, *t.queuedBytes, *t.queuedFrom, ctx.peekScratch);
    if (!plain) {
      return std::make_shared<PeekedQueue>(fail(std::move(plain).error()));
    }
    if (*plain) {
      return std::make_shared<PeekedQueue>(std::move(**plain));
    }
  }
  return std::make_shared<PeekedQueue>(
      peekUnixQueue(fd, type, o.peekOff, o.opts.so_passcred(),
                    type == SOCK_STREAM ? t.queuedBytes : std::nullopt, ctx.peekScratch));
}

}  // namespace

void UnixSocketKind::readAhead(OpenFile& f, ReadAheadContext& ctx) const {
  if (!S_ISSOCK(f.st.st_mode) || !f.dup.valid()) {
    return;
  }
  UnixAhead a;
  if (f.table != nullptr && f.table->family >= 0) {
    // The fd-table iterator read the family, the owner and (for a unix socket) the
    // options and the queue's length: syscalls only for what it cannot answer exactly.
    const FdTableReader::Fd& t = *f.table;
    a.domain = t.family;
    if (a.domain == AF_UNIX) {
      // (The peer's uid and gid are the kernel's: outside the initial user namespace
      // getsockopt maps them, so the options are read with it there.)
      std::optional<UnixSockOpts> opts =
          t.usk && ctx.initialUserNs ? unixSockOptsFromUsk(*t.usk) : std::nullopt;
      a.opts.emplace(opts ? Result<UnixSockOpts>(std::move(*opts))
                          : readUnixSockOpts(f.dup.get(), ctx.sockopts));
      auto fown = fownFromOwner(t.ownerPid, t.ownerPidType, t.ownerSignum);
      a.fown.emplace(fown ? Result<images::FownEntry>(std::move(*fown)) : readFown(f.dup.get()));
      if (*a.opts) {
        a.queue = queueAhead(f.dup.get(), t, **a.opts, ctx);
      }
    }
    f.ahead = std::move(a);
    return;
  }
  // The family comes in the same submission as the options (most sockets of a tree are
  // unix ones); for another family the options read are dropped.
  auto opts = readUnixSockOpts(f.dup.get(), ctx.sockopts, {}, &a.domain);
  if (a.domain < 0) {
    return;  // matches() asks again and collect() reads the rest itself
  }
  if (a.domain == AF_UNIX) {
    a.opts.emplace(std::move(opts));
    a.fown.emplace(readFown(f.dup.get()));
  }
  f.ahead = std::move(a);
}

bool UnixSocketKind::matches(const OpenFile& f) const {
  if (!S_ISSOCK(f.st.st_mode)) {
    return false;
  }
  if (const UnixAhead* a = aheadOf(f); a != nullptr) {
    return a->domain == AF_UNIX;
  }
  if (f.fast != nullptr && (f.fast->flags & CRP_FD_SOCKET) != 0) {
    return f.fast->sk_family == AF_UNIX;
  }
  // Socket inodes are unique across namespaces (one sockfs): an inode in a sock_diag
  // table of AF_UNIX sockets is one. Others (another family, or a unix socket of a
  // namespace not dumped yet) are asked.
  if (table_.find(static_cast<uint32_t>(f.st.st_ino)) != nullptr) {
    return true;
  }
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (::getsockopt(f.dup.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) {
    return false;
  }
  return domain == AF_UNIX;
}

Status UnixSocketKind::addNamespace(DumpContext& ctx, uint64_t netnsIno, int netnsFd) {
  if (table_.hasNamespace(netnsIno)) {
    return {};
  }
  return addDump(ctx, {netnsIno, dumpUnixDiag(netnsIno == selfNetns_ ? -1 : netnsFd)});
}

Status UnixSocketKind::addDump(DumpContext& ctx, NamespaceDump dump) {
  auto& [netnsIno, sockets] = dump;
  if (!sockets) {
    return fail(std::move(sockets).error().context("net namespace " + std::to_string(netnsIno)));
  }
  size_t n = sockets->size();
  uint32_t id = table_.addNamespace(netnsIno, std::move(*sockets));
  ctx.log.debug("unix: %zu sockets in net namespace %lu (ns id %u)", n,
                static_cast<unsigned long>(netnsIno), id);
  return {};
}

std::vector<UnixSocketKind::NamespaceDump> UnixSocketKind::dumpNamespaces(
    const std::vector<std::pair<uint64_t, pid_t>>& todo, uint64_t self) {
  std::vector<NamespaceDump> out;
  for (const auto& [ino, pid] : todo) {
    UniqueFd nsFd;
    if (ino != self) {
      std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
      nsFd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!nsFd.valid()) {
        out.emplace_back(ino, fail(Error::sys("open " + path)));
        break;
      }
    }
    out.emplace_back(ino, dumpUnixDiag(ino == self ? -1 : nsFd.get()));
    if (!out.back().second) {
      break;  // the dump fails with it
    }
  }
  return out;
}

// The fd-table slots (FDSize) of the whole tree from which prepare() starts the sock_diag
// dumps at once.
constexpr size_t kEarlyDiagFrom = 1024;

Status UnixSocketKind::prepare(DumpContext& ctx) {
  auto self = netnsInode("/proc/self/ns/net");
  if (!self) {
    return fail(std::move(self).error());
  }
  selfNetns_ = *self;
  // One sock_diag dump per network namespace of the tree, not per socket: group the
  // tasks by the inode of their ns/net link.
  std::map<uint64_t, pid_t> firstPid;
  for (pid_t pid : ctx.pids) {
    auto ino = netnsInode("/proc/" + std::to_string(pid) + "/ns/net");
    if (!ino) {
      return fail(std::move(ino).error().context("pid " + std::to_string(pid)));
    }
    firstPid.emplace(*ino, pid);
  }
  // Dumped when the first socket is looked up: a tree with no unix socket costs no
  // sock_diag dump of a busy namespace (thousands of sockets on a desktop or a server).
  netnsToLoad_.assign(firstPid.begin(), firstPid.end());
  // A tree with large fd tables likely holds many sockets: the dumps start now, on a
  // thread of their own, while the collector reads memory and loads the fd-table iterator
  // (10,000 sockets: ~20 ms of parsing off the critical path).
  size_t tableSlots = 0;
  for (pid_t pid : ctx.pids) {
    tableSlots += procFdTableSize(pid);
  }
  if (tableSlots >= kEarlyDiagFrom) {
    try {
      early_ = std::async(std::launch::async, dumpNamespaces, netnsToLoad_, selfNetns_);
    } catch (const std::system_error&) {
      // No thread to be had: the dumps are made at the first lookup, as for a small tree.
    }
  }
  return {};
}

Status UnixSocketKind::loadNamespaces(DumpContext& ctx) {
  auto todo = std::move(netnsToLoad_);
  netnsToLoad_.clear();
  for (auto& dump : early_.valid() ? early_.get() : dumpNamespaces(todo, selfNetns_)) {
    CRPIPE_TRY(addDump(ctx, std::move(dump)));
  }
  return {};
}

Result<const UnixDiagTable::Known*> UnixSocketKind::lookup(DumpContext& ctx, OpenFile& f) {
  if (!netnsToLoad_.empty()) {
    CRPIPE_TRY(loadNamespaces(ctx));
  }
  auto ino = static_cast<uint32_t>(f.st.st_ino);
  if (const auto* k = table_.find(ino)) {
    return k;
  }
  // A socket of a namespace no task of the tree is in (it came in a queued message, or
  // was created before a setns): SIOCGSKNS names its namespace, which is dumped once.
  auto dup = f.ensureDup();
  if (!dup) {
    return fail(std::move(dup).error());
  }
  UniqueFd ns(::ioctl(*dup, SIOCGSKNS));
  if (!ns.valid()) {
    return fail(Error::sys("ioctl(SIOCGSKNS)"));
  }
  struct stat st {};
  if (::fstat(ns.get(), &st) != 0) {
    return fail(Error::sys("fstat of the socket's net namespace"));
  }
  CRPIPE_TRY(addNamespace(ctx, static_cast<uint64_t>(st.st_ino), ns.get()));
  if (const auto* k = table_.find(ino)) {
    return k;
  }
  return failMsg("not in the sock_diag table of its net namespace " +
                 std::to_string(st.st_ino));
}

Status UnixSocketKind::recordQueue(DumpContext& ctx, OpenFile& f, uint32_t id, int type,
                                   int peekOff, bool passCred, std::optional<uint32_t> queued,
                                   const FastUnix* fast,
                                   std::optional<std::vector<PeekedMessage>> peeked) {
  Result<std::vector<PeekedMessage>> msgs = std::vector<PeekedMessage>{};
  if (peeked) {
    *msgs = std::move(*peeked);
  } else if (fast != nullptr && fast->queueRead) {
    *msgs = unixQueueFromFast(*fast, type);
  } else {
    auto dup = f.ensureDup();
    if (!dup) {
      return fail(std::move(dup).error());
    }
    msgs = peekUnixQueue(*dup, type, peekOff, passCred, queued, scratch_);
  }
  if (!msgs) {
    return fail(std::move(msgs).error().context("receive queue"));
  }
  if (msgs->empty()) {
    return {};
  }
  auto img = ctx.out.image("sk-queues.img");
  if (!img) {
    return fail(std::move(img).error());
  }
  for (auto& m : *msgs) {
    images::SkPacketEntry pe;
    pe.set_id_for(id);
    pe.set_length(static_cast<uint32_t>(m.data.size()));
    if (m.addr) {
      pe.set_addr(*m.addr);
    }
    // The kernel attaches the sender's credentials to a message when the sender or the
    // receiver had SO_PASSCRED on at send time (pid 0 and the overflow uid otherwise).
    // They are recorded whenever attached, whether or not SO_PASSCRED is on now: the
    // receiver may turn it on after restore and must see the same credentials.
    if (m.creds && m.creds->pid != 0) {
      auto* u = pe.mutable_ucred();
      u->set_pid(static_cast<uint32_t>(m.creds->pid));
      u->set_uid(m.creds->uid);
      u->set_gid(m.creds->gid);
    }
    if (!m.rights.empty()) {
      auto* scm = pe.add_scm();
      scm->set_type(SCM_RIGHTS);
      for (auto& fd : m.rights) {
        auto of = openFileFromPeek(std::move(fd));
        if (!of) {
          return fail(std::move(of).error().context("SCM_RIGHTS"));
        }
        // Dumped like any other file, whatever its kind; a file a task also holds is
        // found by kcmp and keeps its one id.
        auto known = ctx.files.add(ctx, std::move(*of));
        if (!known) {
          return fail(std::move(known).error().context("a file queued on " + f.where()));
        }
        scm->add_rights(known->id);
      }
    }
    CRPIPE_TRY(ctx.out.entry(*img, pe));
    CRPIPE_TRY(ctx.out.raw(*img, m.data));
  }
  return {};
}

namespace {

// What the BPF fast path answered, or else what `read` gets from the collector's own
// duplicate of the fd (taken only now, when it is needed).
template <typename T, typename Read>
Result<T> fromFastOrDup(OpenFile& f, std::optional<T> fast, Read read) {
  if (fast) {
    return std::move(*fast);
  }
  auto dup = f.ensureDup();
  if (!dup) {
    return fail(std::move(dup).error());
  }
  return read(*dup);
}

}  // namespace

Status UnixSocketKind::notePendingListener(OpenFile& f, uint32_t ino, uint64_t netnsIno) {
  pendingListeners_[netnsIno].insert(ino);
  if (netnsIno == selfNetns_ || pendingNetns_.count(netnsIno) != 0) {
    return {};
  }
  auto dup = f.ensureDup();
  if (!dup) {
    return fail(std::move(dup).error());
  }
  UniqueFd ns(::ioctl(*dup, SIOCGSKNS));
  if (!ns.valid()) {
    return fail(Error::sys("ioctl(SIOCGSKNS)"));
  }
  pendingNetns_.emplace(netnsIno, std::move(ns));
  return {};
}

Status UnixSocketKind::collect(DumpContext& ctx, OpenFile& f, uint32_t id) {
  auto ino = static_cast<uint32_t>(f.st.st_ino);
  std::string where = f.where() + ": unix socket ino " + std::to_string(ino);
  auto knownR = lookup(ctx, f);
  if (!knownR) {
    return fail(std::move(knownR).error().context(where));
  }
  const UnixDiagSocket& sk = (*knownR)->sk;
  if (sk.type != SOCK_STREAM && sk.type != SOCK_DGRAM && sk.type != SOCK_SEQPACKET) {
    return failMsg(where + ": socket type " + std::to_string(sk.type) + " is not supported");
  }
  // The fast path's records where they answer exactly; a duplicate and syscalls otherwise.
  const FastUnix* fast = ctx.fast != nullptr && f.fast != nullptr ? ctx.fast->unixSocket(ino)
                                                                   : nullptr;
  std::optional<UnixSockOpts> fastOpts = fast != nullptr ? unixSockOptsFromFast(*fast)
                                                         : std::nullopt;
  KnownUnixSockOpts knownOpts;
  if (sk.meminfo.size() > SK_MEMINFO_SNDBUF) {
    knownOpts.rcvbuf = sk.meminfo[SK_MEMINFO_RCVBUF];
    knownOpts.sndbuf = sk.meminfo[SK_MEMINFO_SNDBUF];
  }
  const UnixAhead* ahead = aheadOf(f);
  if (ahead != nullptr) {
    CRPIPE_TRY(takeAhead(ahead->opts, fastOpts, where));
  }
  auto opts = fromFastOrDup(f, std::move(fastOpts),
                            [&knownOpts](int fd) { return readUnixSockOpts(fd, knownOpts); });
  if (!opts) {
    return fail(std::move(opts).error().context(where));
  }
  std::optional<images::FownEntry> knownFown =
      f.fast != nullptr ? fownFromFast(*f.fast) : std::nullopt;
  if (ahead != nullptr) {
    CRPIPE_TRY(takeAhead(ahead->fown, knownFown, where));
  }
  auto fown = fromFastOrDup(f, std::move(knownFown), readFown);
  if (!fown) {
    return fail(std::move(fown).error().context(where));
  }
  std::shared_ptr<PeekedQueue> peekedAhead;
  if (ahead != nullptr) {
    peekedAhead = ahead->queue;
  }
  ahead = nullptr;
  f.ahead.reset();  // taken: the entry stays in the file table for the whole dump

  Recorded rec;
  rec.where = f.where();
  rec.entry = newEntry();
  images::UnixSkEntry& e = *rec.entry;
  e.set_id(id);
  e.set_ino(ino);
  e.set_type(sk.type);
  e.set_state(sk.state);
  e.set_flags(f.fdinfo.flags & ~static_cast<uint32_t>(O_CLOEXEC));
  e.set_uflags(0);
  // For a listener sock_diag's wqueue is sk_max_ack_backlog, what listen() was given
  // (clamped to somaxconn); rqueue is how many connections wait in the accept queue.
  e.set_backlog(sk.state == TCP_LISTEN ? sk.wqueue.value_or(0) : 0);
  e.set_peer(sk.peer);
  *e.mutable_fown() = *fown;
  *e.mutable_opts() = opts->opts;
  e.set_name(sk.name.value_or(""));
  if (sk.shutdown && *sk.shutdown != 0) {
    // The kernel's RCV_SHUTDOWN/SEND_SHUTDOWN bits are sk_shutdown's READ/WRITE.
    e.set_shutdown(static_cast<images::SkShutdown>(*sk.shutdown & 3));
  }
  e.set_ns_id((*knownR)->nsId);

  auto* x = e.mutable_crpipe();
  x->set_peek_off(opts->peekOff);
  if (opts->peercred) {
    *x->mutable_peercred() = *opts->peercred;
  }
  for (uint32_t icon : sk.icons) {
    x->add_icons(icon);
  }
  if (sk.state == TCP_LISTEN && !sk.icons.empty()) {
    CRPIPE_TRY_CTX(notePendingListener(f, ino, (*knownR)->netnsIno), where);
  }
  if (sk.vfsIno) {
    x->set_vfs_ino(*sk.vfsIno);
    x->set_vfs_dev(sk.vfsDev.value_or(0));
  }
  x->set_origin(f.pid == 0 ? "scm" : "fd");
  if (sk.rqueue) {
    x->set_rqlen(*sk.rqueue);
    x->set_wqlen(sk.wqueue.value_or(0));
  }
  x->set_netns_ino((*knownR)->netnsIno);

  if (sk.name && !sk.name->empty()) {
    if ((*sk.name)[0] == '\0') {
      if (looksAutobound(*sk.name)) {
        x->set_autobound(true);
      }
    } else {
      auto dup = f.ensureDup();
      if (!dup) {
        return fail(std::move(dup).error().context(where));
      }
      auto bound = resolveBoundFile(*dup, pathOf(*sk.name), f.pid);
      if (!bound) {
        return fail(std::move(bound).error().context(where + " bound to '" +
                                                     pathOf(*sk.name) + "'"));
      }
      e.set_mnt_id(bound->mntId);
      auto mns = mountNs_.namespaceOf(bound->mntId, ctx.pids);
      if (!mns) {
        return fail(std::move(mns).error().context(where + ": the mount of its socket file"));
      }
      if (mns->value_or(0) != 0) {
        x->set_mntns_ino(**mns);
      }
      *e.mutable_file_perms() = bound->perms;
      if (bound->deleted) {
        e.set_deleted(true);
      }
      if (bound->nameDir) {
        e.set_name_dir(*bound->nameDir);
      }
      if (bound->currentPath) {
        x->set_current_path(*bound->currentPath);
      }
    }
  }

  // The entry is kept before the queue is read: a queued message may carry this very
  // socket's peer, and finish() needs to see every socket anyway.
  if (holdsQueue(sk.type, sk.state)) {
    // For a stream, sock_diag's rqueue is the bytes queued (for a datagram socket only
    // the first datagram's).
    std::optional<uint32_t> queued = sk.type == SOCK_STREAM ? sk.rqueue : std::nullopt;
    std::optional<std::vector<PeekedMessage>> peeked;
    if (peekedAhead) {
      if (!*peekedAhead) {
        return fail(Error(peekedAhead->error()).context(where + ": receive queue"));
      }
      peeked = std::move(**peekedAhead);
    }
    auto st = recordQueue(ctx, f, id, sk.type, opts->peekOff, opts->opts.so_passcred(),
                          queued, fast, std::move(peeked));
    if (!st) {
      return fail(std::move(st).error().context(where));
    }
  }
  ctx.log.debug("unix: %s id %u type %u state %u peer %u", where.c_str(), id, sk.type,
                sk.state, sk.peer);
  recorded_.emplace(ino, std::move(rec));
  return {};
}

}  // namespace crpipe::collector
