#include "restorer/kinds/unix_kind.h"

#include <fcntl.h>
#include <sched.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "restorer/kinds/unix_addr.h"
#include "restorer/kinds/unix_opts.h"

#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (SIOCPROTOPRIVATE + 0)
#endif

namespace crpipe::restorer {

namespace {

using Role = proto::UnixRole;

bool connectionType(const images::UnixSkEntry& e) {
  return e.type() == SOCK_STREAM || e.type() == SOCK_SEQPACKET;
}

std::string nameKey(const images::UnixSkEntry& e) { return e.name_dir() + '\n' + e.name(); }

Result<UniqueFd> newSocket(int type) {
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return failSys("socket(AF_UNIX, " + std::to_string(type) + ")");
  }
  return fd;
}

// listen() as a Status, for PeerCreds.
Status listenOn(int fd, int backlog, const std::string& what) {
  if (::listen(fd, backlog) < 0) {
    return failSys(what + ": listen(" + std::to_string(backlog) + ")");
  }
  return {};
}

// A message to write back: its bytes, its credentials, and where to (a datagram to a
// name; nothing on a connected socket).
// `dflt`: fd is a new socket of crpipe's network namespace (SendBudget::reserve).
Status sendOne(SendBudget& budget, bool dflt, int fd, std::string_view data,
               const images::SkPacketEntry& pe, const UnixAddr* to,
               const std::vector<int>& rights = {}) {
  CRPIPE_TRY(budget.reserve(fd, data.size(), dflt));
  iovec iov{const_cast<char*>(data.data()), data.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (to != nullptr) {
    mh.msg_name = const_cast<sockaddr_un*>(&to->sa);
    mh.msg_namelen = to->len;
  }
  // Files passed with SCM_RIGHTS, then the credentials.
  std::vector<char> control(CMSG_SPACE(sizeof(int) * rights.size()) +
                            CMSG_SPACE(sizeof(ucred)));
  size_t used = 0;
  if (!rights.empty() || pe.has_ucred()) {
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
  }
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (!rights.empty()) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * rights.size());
    std::memcpy(CMSG_DATA(c), rights.data(), sizeof(int) * rights.size());
    used += CMSG_SPACE(sizeof(int) * rights.size());
    c = CMSG_NXTHDR(&mh, c);
  }
  if (pe.has_ucred()) {
    // Root may send any pid that exists; the restored tree has the original pids.
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof(ucred));
    ucred u{static_cast<pid_t>(pe.ucred().pid()), pe.ucred().uid(), pe.ucred().gid()};
    std::memcpy(CMSG_DATA(c), &u, sizeof(u));
    used += CMSG_SPACE(sizeof(ucred));
  }
  mh.msg_controllen = used;
  if (used == 0) {
    mh.msg_control = nullptr;
  }
  ssize_t n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
  if (n < 0) {
    return failSys("sendmsg of a queued message (" + std::to_string(data.size()) + " bytes)");
  }
  if (static_cast<size_t>(n) != data.size()) {
    return failMsg("sendmsg wrote " + std::to_string(n) + " of " + std::to_string(data.size()) +
                   " bytes of a queued message");
  }
  return {};
}

}  // namespace

Status UnixSocketKind::check(const images::FileEntry&) const { return {}; }

Status UnixSocketKind::inNamespace(int nstype, uint64_t ino, const std::map<uint64_t, int>& peers,
                                   std::map<uint64_t, UniqueFd>& taken,
                                   const std::function<Status()>& fn) {
  const bool mnt = nstype == CLONE_NEWNS;
  const std::string what = std::string(mnt ? "mount" : "network") + " namespace " + std::to_string(ino);
  auto peer = peers.find(ino);
  if (peer == peers.end()) {
    return failMsg(what + " was not handed to this task");
  }
  auto it = taken.find(ino);
  if (it == taken.end()) {
    auto got = takeInherited(coordinatorPid_, peer->second, fdBase_);
    if (!got) {
      return fail(std::move(got).error().context(what));
    }
    it = taken.emplace(ino, std::move(*got)).first;
  }
  const std::string ownPath = std::string("/proc/thread-self/ns/") + (mnt ? "mnt" : "net");
  UniqueFd own(::open(ownPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!own.valid()) {
    return failSys("open " + ownPath);
  }
  // Joining a mount namespace moves the root and the working directory to its root.
  UniqueFd cwd;
  if (mnt) {
    cwd.reset(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cwd.valid()) {
      return failSys("open the working directory");
    }
  }
  if (::setns(it->second.get(), nstype) < 0) {
    return failSys("setns into " + what);
  }
  Status st = fn();
  if (::setns(own.get(), nstype) < 0) {
    return failSys("setns back out of " + what);
  }
  if (cwd.valid() && ::fchdir(cwd.get()) < 0) {
    return failSys("fchdir back after " + what);
  }
  return st;
}

bool UnixSocketKind::ownNetns(const images::UnixSkEntry& e) const {
  const uint64_t ino = e.crpipe().netns_ino();
  return ino == 0 || !netnsPeer_.contains(ino);
}

Status UnixSocketKind::inNetns(const images::UnixSkEntry& e, const std::function<Status()>& fn) {
  const uint64_t ino = e.crpipe().netns_ino();
  if (ino == 0 || !netnsPeer_.contains(ino)) {
    return fn();  // crpipe's own network namespace
  }
  return inNamespace(CLONE_NEWNET, ino, netnsPeer_, netnsFds_, fn);
}

Status UnixSocketKind::atName(const images::UnixSkEntry& e, const std::function<Status()>& fn) {
  const uint64_t ino = e.crpipe().mntns_ino();
  if (ino == 0 || e.name().empty() || e.name()[0] == '\0') {
    return fn();  // crpipe's own mount namespace, or no file
  }
  return inNamespace(CLONE_NEWNS, ino, mntnsPeer_, mntnsFds_, fn);
}

Result<UniqueFd> UnixSocketKind::makeSocket(const images::UnixSkEntry& e, int type) {
  UniqueFd out;
  CRPIPE_TRY(inNetns(e, [&]() -> Status {
    auto fd = newSocket(type);
    if (!fd) {
      return fail(std::move(fd).error());
    }
    out = std::move(*fd);
    return {};
  }));
  return out;
}

Status UnixSocketKind::makePair(const images::UnixSkEntry& e, int type, UniqueFd& a, UniqueFd& b) {
  // Both ends report the pair's maker: e's recorded SO_PEERCRED.
  return inNetns(e, [&]() -> Status {
    auto fds = creds_.as(recordedPeerCred(e), [&]() -> Result<std::vector<int>> {
      int sv[2];
      if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) {
        return failSys("socketpair");
      }
      return std::vector<int>{sv[0], sv[1]};
    });
    if (!fds) {
      return fail(std::move(fds).error());
    }
    if (fds->size() != 2) {
      return failMsg("socketpair gave " + std::to_string(fds->size()) + " fds");
    }
    a.reset((*fds)[0]);
    b.reset((*fds)[1]);
    return {};
  });
}

std::string UnixSocketKind::where(const images::UnixSkEntry& e) const {
  return "unix socket ino " + std::to_string(e.ino()) + " '" + printableUnixName(e.name()) + "'";
}

const images::UcredEntry* UnixSocketKind::clientSideCred(const std::string& key) const {
  auto it = clientCreds_.find(key);
  return it == clientCreds_.end() ? nullptr : it->second;
}

Status UnixSocketKind::home(Sock& s) {
  auto placed = placeHome(std::move(s.fd), homeOf(homes_, s.e->id()));
  if (!placed) {
    return fail(std::move(placed).error());
  }
  s.fd = std::move(*placed);
  return {};
}

const images::UnixSkEntry* UnixSocketKind::byIno(uint32_t ino) const {
  auto it = inoToId_.find(ino);
  return it == inoToId_.end() || ino == 0 ? nullptr : entries_.at(it->second);
}

bool UnixSocketKind::isPendingConnection(uint32_t id) const {
  auto it = entries_.find(id);
  return it != entries_.end() && it->second->crpipe().listener() != 0;
}

UnixSocketKind::Sock* UnixSocketKind::local(uint32_t id) {
  auto it = socks_.find(id);
  return it == socks_.end() ? nullptr : &it->second;
}

Status UnixSocketKind::takeOrder(proto::TaskOrder::Reader order,
                                 const FileEntries& files) {
  for (const auto& [id, entry] : files) {
    const images::FileEntry& fe = *entry;
    if (fe.type() == images::UNIXSK) {
      entries_[id] = &fe.usk();
      if (fe.usk().ino() != 0 && (fe.usk().uflags() & 1) == 0) {
        inoToId_[fe.usk().ino()] = id;
      }
    }
  }
  for (auto u : order.getUnixSockets()) {
    auto it = entries_.find(u.getFileId());
    if (it == entries_.end()) {
      return failMsg("unix socket id " + std::to_string(u.getFileId()) +
                     " is not in the task order");
    }
    Sock s;
    s.e = it->second;
    s.role = u.getRole();
    s.partner = u.getPartner();
    auto c = u.getConnectTo();
    s.connectTo.assign(reinterpret_cast<const char*>(c.begin()), c.size());
    s.inFlight = u.getInFlight();
    s.keepPath = u.getKeepPath();
    socks_.emplace(u.getFileId(), std::move(s));
  }
  for (auto p : order.getPendingConnects()) {
    if (!entries_.contains(p.getEmbryo())) {
      return failMsg("pending connection id " + std::to_string(p.getEmbryo()) +
                     " is not in the task order");
    }
    pendingConnects_.push_back({p.getEmbryo(), p.getRound()});
  }
  for (auto i : order.getInherited()) {
    inherited_[i.getFileId()] = i.getPeer();
  }
  coordinatorPid_ = order.getCoordinatorPid();
  for (auto n : order.getNetns()) {
    netnsPeer_[n.getIno()] = n.getFd();
  }
  for (auto n : order.getMntns()) {
    mntnsPeer_[n.getIno()] = n.getFd();
  }
  for (auto q : order.getSkQueues()) {
    Message m;
    auto b = q.getEntry();
    if (!m.entry.ParseFromArray(b.begin(), static_cast<int>(b.size()))) {
      return failMsg("task order: malformed queued message");
    }
    m.file = q.getFile();
    m.offset = q.getOffset();
    m.length = q.getLength();
    queue_.push_back(std::move(m));
  }
  for (int fd : order.getDataFiles()) {
    dataFiles_.push_back(fd);
  }
  return {};
}

UnixSocketKind::MappedData::~MappedData() {
  if (p_ != nullptr && n_ > 0) {
    ::munmap(const_cast<void*>(p_), n_);
  }
}

Status UnixSocketKind::mapQueueData() {
  std::vector<std::string_view> views(dataFiles_.size());
  std::vector<bool> needed(dataFiles_.size());
  for (const auto& m : queue_) {
    if (m.length == 0) {
      continue;
    }
    if (m.file >= dataFiles_.size()) {
      return failMsg("task order: a queued message's data is in file " + std::to_string(m.file) +
                     " of " + std::to_string(dataFiles_.size()));
    }
    needed[m.file] = true;
  }
  for (size_t f = 0; f < dataFiles_.size(); ++f) {
    if (!needed[f]) {
      continue;
    }
    const std::string what = "queued data (crpipe's fd " + std::to_string(dataFiles_[f]) + ")";
    auto fd = takeInherited(coordinatorPid_, dataFiles_[f], fdBase_);
    if (!fd) {
      return fail(std::move(fd).error().context(what));
    }
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0) {
      return failSys("fstat " + what);
    }
    if (st.st_size == 0) {
      continue;
    }
    // Read-only and shared: the pages of the image file (or of crpipe's memfd) are
    // written to the sockets from where they are, never copied into this task first.
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED,
                     fd->get(), 0);
    if (p == MAP_FAILED) {
      return failSys("mmap " + what);
    }
    views[f] = dataMaps_.emplace_back(p, static_cast<size_t>(st.st_size)).view();
  }
  for (auto& m : queue_) {
    if (m.length == 0) {
      continue;
    }
    const auto& v = views[m.file];
    if (m.offset > v.size() || m.length > v.size() - m.offset) {
      return failMsg("task order: a queued message's " + std::to_string(m.length) +
                     " bytes at offset " + std::to_string(m.offset) + " run past its data (" +
                     std::to_string(v.size()) + " bytes)");
    }
    m.data = v.substr(m.offset, m.length);
  }
  return {};
}

Status UnixSocketKind::atPhase(OpenContext& ctx) {
  // A task may connect pending connections and hold no socket of its own (it closed its
  // client before the dump).
  if (socks_.empty() && pendingConnects_.empty()) {
    return {};
  }
  fdBase_ = ctx.fdBase;
  homes_ = ctx.homes;
  log_ = &ctx.log;
  creds_ = PeerCreds(log_);
  made_ = ctx.made;
  if (ctx.phase == RestorePhase::PENDING_CONNECT) {
    return connectPending(ctx.round);
  }
  return runPhase(ctx);
}

Result<OpenResult> UnixSocketKind::open(OpenContext& ctx, const images::FileEntry& fe) {
  Sock* s = local(fe.id());
  if (s == nullptr) {
    return failMsg(where(fe.usk()) + ": the plan gave this task no order for it");
  }
  if (ctx.phase != RestorePhase::SHARE_FDS) {
    return OpenResult::waitFor(RestorePhase::SHARE_FDS);  // atPhase makes it meanwhile
  }
  if (!s->fd.valid()) {
    return failMsg(where(*s->e) + " was not created");
  }
  if (s->fd.get() == homeOf(ctx.homes, fe.id())) {
    return OpenResult::done(std::move(s->fd));
  }
  auto moved = moveAbove(std::move(s->fd), ctx.fdBase);
  if (!moved) {
    return fail(std::move(moved).error());
  }
  return OpenResult::done(std::move(*moved));
}

Status UnixSocketKind::runPhase(OpenContext& ctx) {
  switch (ctx.phase) {
    case RestorePhase::BIND_LISTEN:
      return bindListen(ctx);
    case RestorePhase::CONNECT:
      return connectClients();
    case RestorePhase::ACCEPT:
      return acceptAll();
    case RestorePhase::REFILL_QUEUES:
      return refill();
    case RestorePhase::OPEN_FILES:
      return finishSockets();
    case RestorePhase::SHARE_FDS:
      return fixNames();
    default:
      return {};
  }
}

Status UnixSocketKind::bindListen(OpenContext&) {
  // Names a temporary listener takes first: an accepted socket's own name is its
  // listener's, and only a connection through a listener bound there gives it that name.
  std::map<std::string, const images::UnixSkEntry*> temps;
  for (auto& [id, s] : socks_) {
    if (s.role == Role::ACCEPT_VIA_TEMP || (s.role == Role::HALF_CLOSED && !s.e->name().empty())) {
      temps.emplace(nameKey(*s.e), s.e);
      if (const auto* c = byIno(s.e->peer()); c != nullptr && c->crpipe().has_peercred()) {
        clientCreds_.try_emplace(nameKey(*s.e), &c->crpipe().peercred());
      }
    }
  }
  // A listener of this task bound at that name accepts them itself, so that the accepted
  // sockets share its socket file as the originals did.
  std::map<std::string, Sock*> realListeners;
  for (auto& [id, s] : socks_) {
    if (s.role == Role::PLAIN && s.e->state() == TCP_LISTEN && temps.contains(nameKey(*s.e))) {
      realListeners[nameKey(*s.e)] = &s;
    }
  }
  for (auto& [key, e] : temps) {
    if (realListeners.contains(key)) {
      continue;
    }
    auto fd = makeSocket(*e, static_cast<int>(e->type()));
    if (!fd) {
      return fail(std::move(fd).error().context(where(*e)));
    }
    CRPIPE_TRY_CTX(atName(*e, [&]() { return bindName(fd->get(), *e); }),
                   where(*e) + ": temporary listener");
    CRPIPE_TRY(creds_.as(clientSideCred(key), [&]() {
      return listenOn(fd->get(), 4096, where(*e) + ": the temporary listener");
    }));
    tempListeners_.emplace(key, std::move(*fd));
  }
  for (auto& [id, s] : socks_) {
    const auto& e = *s.e;
    const int type = static_cast<int>(e.type());
    switch (s.role) {
      case Role::PAIR_FIRST: {
        Sock* other = local(s.partner);
        if (other == nullptr) {
          return failMsg(where(e) + ": its pair's other end is made elsewhere");
        }
        CRPIPE_TRY_CTX(makePair(e, type, s.fd, other->fd), where(e));
        // The two new ends are alike until used: each takes the one already at its home.
        if (s.fd.get() == homeOf(homes_, other->e->id()) ||
            other->fd.get() == homeOf(homes_, s.e->id())) {
          std::swap(s.fd, other->fd);
        }
        CRPIPE_TRY_CTX(home(s), where(e));
        CRPIPE_TRY_CTX(home(*other), where(e));
        CRPIPE_TRY_CTX(home(s), where(e));  // its home may have held the other end
        break;
      }
      case Role::PAIR_SECOND:
      case Role::ACCEPT_VIA_TEMP:
        break;
      case Role::HALF_CLOSED:
        if (e.name().empty()) {
          CRPIPE_TRY_CTX(makePair(e, type, s.fd, s.tempPeer), where(e));
          CRPIPE_TRY_CTX(home(s), where(e));
        }
        break;
      case Role::INHERITED: {
        auto it = inherited_.find(id);
        if (it == inherited_.end()) {
          return failMsg(where(e) + ": no --inherit-fd for it reached this task");
        }
        auto got = takeInherited(coordinatorPid_, it->second, fdBase_);
        if (!got) {
          return fail(std::move(got).error().context(where(e)));
        }
        int type = 0;
        socklen_t tl = sizeof(type);
        sockaddr_storage ss{};
        socklen_t sl = sizeof(ss);
        if (::getsockopt(got->get(), SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
            ::getsockname(got->get(), reinterpret_cast<sockaddr*>(&ss), &sl) < 0 ||
            ss.ss_family != AF_UNIX || type != static_cast<int>(e.type())) {
          return failMsg(where(e) + ": --inherit-fd fd[" + std::to_string(it->second) +
                         "] is not a unix socket of type " + std::to_string(e.type()));
        }
        s.fd = std::move(*got);
        CRPIPE_TRY_CTX(home(s), where(e));
        break;
      }
      case Role::EXTERNAL:
        if (s.connectTo.empty()) {
          // A dead connection: its peer is made only to be closed after the refill.
          CRPIPE_TRY_CTX(makePair(e, type, s.fd, s.tempPeer), where(e));
          CRPIPE_TRY_CTX(home(s), where(e));
          break;
        }
        [[fallthrough]];
      default: {
        auto fd = makeSocket(e, type);
        if (!fd) {
          return fail(std::move(fd).error().context(where(e)));
        }
        s.fd = std::move(*fd);
        CRPIPE_TRY_CTX(home(s), where(e));
        if (e.name().empty()) {
          break;
        }
        CRPIPE_TRY_CTX(atName(e, [&]() -> Status {
          if (!e.deleted()) {
            return bindName(s.fd.get(), e);
          }
          // Unlinked before the dump: other sockets may have been bound at that path since
          // (or a FIFO made there). Its file is moved to a path of its own right after the
          // bind, where this task's connects and sends find it, and whatever held the path
          // goes back at once. A listener other tasks' clients connect to keeps the path.
          const size_t before = displaced_.size();
          CRPIPE_TRY(displaceOccupant(e));
          CRPIPE_TRY(bindName(s.fd.get(), e, &madeDirs_[e.id()]));
          if (temps.contains(nameKey(e)) || s.keepPath) {
            return {};
          }
          CRPIPE_TRY(hideDeleted(e));
          return putBack(before);
        }), where(e));
        if (e.state() == TCP_LISTEN && temps.contains(nameKey(e))) {
          // It accepts its established connections first: a backlog wide enough for all of
          // them now, the recorded one again once they are accepted.
          CRPIPE_TRY(creds_.as(clientSideCred(nameKey(e)),
                               [&]() { return listenOn(s.fd.get(), 4096, where(e)); }));
          s.deferListen = true;
          tempListeners_.emplace(nameKey(e), UniqueFd(::fcntl(s.fd.get(), F_DUPFD_CLOEXEC, 0)));
          break;
        }
        if (e.state() == TCP_LISTEN) {
          CRPIPE_TRY(creds_.as(recordedPeerCred(e), [&]() {
            return listenOn(s.fd.get(), static_cast<int>(e.backlog()), where(e));
          }));
        }
        break;
      }
    }
    if (s.role != Role::ACCEPT_VIA_TEMP && s.role != Role::HALF_CLOSED && !s.e->name().empty() &&
        e.state() == TCP_LISTEN && !s.deferListen) {
      log_->debug("%s listens", where(e).c_str());
    }
  }
  return {};
}

Status UnixSocketKind::connectClients() {
  for (auto& [id, s] : socks_) {
    const auto& e = *s.e;
    if (s.role == Role::CONNECT_VIA_TEMP) {
      auto pit = entries_.find(s.partner);
      if (pit == entries_.end()) {
        return failMsg(where(e) + ": its peer's entry is not in the task order");
      }
      const auto& p = *pit->second;
      CRPIPE_TRY_CTX(creds_.as(recordedPeerCred(p), [&]() {
        return atName(p, [&]() { return connectName(s.fd.get(), p.name(), p.name_dir()); });
      }), where(e));
      // Tells the accepting task which end this connection is for (it reads the tag
      // away before anything else is queued).
      uint32_t tag = s.partner;
      if (::send(s.fd.get(), &tag, sizeof(tag), MSG_NOSIGNAL) != sizeof(tag)) {
        return failSys(where(e) + ": send the connection tag");
      }
    } else if (s.role == Role::HALF_CLOSED && !e.name().empty()) {
      auto fd = makeSocket(e, static_cast<int>(e.type()));
      if (!fd) {
        return fail(std::move(fd).error().context(where(e)));
      }
      s.tempPeer = std::move(*fd);
      CRPIPE_TRY_CTX(creds_.as(recordedPeerCred(e), [&]() {
        return atName(e, [&]() { return connectName(s.tempPeer.get(), e.name(), e.name_dir()); });
      }), where(e));
      uint32_t tag = id;
      if (::send(s.tempPeer.get(), &tag, sizeof(tag), MSG_NOSIGNAL) != sizeof(tag)) {
        return failSys(where(e) + ": send the connection tag");
      }
    } else if (s.role == Role::EXTERNAL && connectionType(e) && !s.connectTo.empty()) {
      CRPIPE_TRY_CTX(connectName(s.fd.get(), s.connectTo, ""),
                     where(e) + ": reconnect to its outside peer");
    }
  }
  return {};
}

Status UnixSocketKind::acceptAll() {
  for (auto& [key, lfd] : tempListeners_) {
    size_t expected = 0;
    const images::UnixSkEntry* named = nullptr;
    for (auto& [id, s] : socks_) {
      if ((s.role == Role::ACCEPT_VIA_TEMP || s.role == Role::HALF_CLOSED) &&
          !s.e->name().empty() && nameKey(*s.e) == key) {
        ++expected;
        named = s.e;
      }
    }
    for (size_t i = 0; i < expected; ++i) {
      UniqueFd a(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!a.valid()) {
        return failSys(where(*named) + ": accept on the temporary listener");
      }
      uint32_t tag = 0;
      if (::recv(a.get(), &tag, sizeof(tag), MSG_WAITALL) != sizeof(tag)) {
        return failSys(where(*named) + ": read the connection tag");
      }
      Sock* s = local(tag);
      if (s == nullptr || s->fd.valid()) {
        return failMsg(where(*named) + ": a connection with an unknown tag " +
                       std::to_string(tag));
      }
      s->fd = std::move(a);
      CRPIPE_TRY_CTX(home(*s), where(*s->e));
    }
    lfd.reset();
    bool real = false;
    for (auto& [id, s] : socks_) {
      real = real || (s.deferListen && nameKey(*s.e) == key);
    }
    // A temporary listener's file stays only if the accepted sockets' file was still there
    // at dump time (their listener closed, its file left behind).
    if (!real && named->deleted()) {
      CRPIPE_TRY(atName(*named, [&]() -> Status {
        unlinkName(named->name(), named->name_dir());
        return {};
      }));
    }
  }
  tempListeners_.clear();
  for (auto& [id, s] : socks_) {
    if (s.deferListen) {
      CRPIPE_TRY(creds_.as(recordedPeerCred(*s.e), [&]() {
        return listenOn(s.fd.get(), static_cast<int>(s.e->backlog()), where(*s.e));
      }));
    }
  }
  return {};
}

void UnixSocketKind::learnDefaultSendBuffer() {
  if (!queue_.empty() && !budget_.hasDefault()) {
    auto t = newSocket(SOCK_STREAM);
    int v = 0;
    socklen_t len = sizeof(v);
    if (t && ::getsockopt(t->get(), SOL_SOCKET, SO_SNDBUF, &v, &len) == 0 && v > 0) {
      budget_.setDefault(static_cast<size_t>(v));
    }
  }
}

Status UnixSocketKind::refill() {
  CRPIPE_TRY(mapQueueData());
  learnDefaultSendBuffer();
  CRPIPE_TRY(writeMessages([this](const Message& m) {
    return !isPendingConnection(m.entry.id_for());  // those were written in pendingConnect
  }));
  dataMaps_.clear();
  for (auto& m : queue_) {
    m.data = {};
  }
  budget_.clear();
  for (auto& [id, s] : socks_) {
    if (s.tempPeer.valid()) {
      budget_.forget(s.tempPeer.get());
    }
    s.tempPeer.reset();
  }
  // Every use of a name of this group is behind: datagram sockets connect to their
  // receivers now (a receiver connected earlier would refuse its other senders' queued
  // datagrams), and a socket file that was unlinked before the dump goes again, giving
  // back the path to whatever was there (a FIFO made over it, say) before other tasks
  // open files in open-files.
  for (auto& [id, s] : socks_) {
    const auto& e = *s.e;
    if (e.type() == SOCK_DGRAM && s.role == Role::PLAIN && e.peer() != 0) {
      const auto* p = byIno(e.peer());
      if (p == nullptr) {
        return failMsg(where(e) + ": its peer ino " + std::to_string(e.peer()) + " is not known here");
      }
      CRPIPE_TRY_CTX(atName(*p, [&]() { return connectName(s.fd.get(), reach(*p), p->name_dir()); }),
                     where(e));
    }
  }
  return unlinkDeleted();
}

Status UnixSocketKind::writeMessages(const std::function<bool(const Message&)>& which) {
  // SCM_CREDENTIALS may only name a pid that exists: while the messages of a sender that
  // exited are written, a holder takes its pid (one per run of messages of one sender).
  std::optional<PidHold> hold;
  uint32_t held = 0;
  for (const auto& m : queue_) {
    if (!which(m)) {
      continue;
    }
    const uint32_t sender = m.entry.has_ucred() ? m.entry.ucred().pid() : 0;
    if (sender != held) {
      hold.reset();
      auto h = PidHold::ifFree(static_cast<pid_t>(sender));
      if (!h) {
        return fail(std::move(h).error());
      }
      if (*h) {
        hold.emplace(std::move(**h));
      }
      held = sender;
    }
    CRPIPE_TRY(writeMessage(m));
  }
  return {};
}

Status UnixSocketKind::displaceOccupant(const images::UnixSkEntry& e, bool sockets) {
  auto a = unixAddr(e.name());
  if (!a || !a->path) {
    return {};
  }
  return inDirectory(e.name_dir(), [&]() -> Status {
    struct stat st {};
    if (::lstat(a->fsPath.c_str(), &st) != 0 || (S_ISSOCK(st.st_mode) && !sockets)) {
      return {};
    }
    // Made at the path after the socket's file was unlinked: set aside while the socket is
    // bound there for the restore, then put back.
    std::string aside = a->fsPath + ".crpipe-aside-" + std::to_string(::getpid()) + "-" +
                        std::to_string(e.ino());
    if (::rename(a->fsPath.c_str(), aside.c_str()) < 0) {
      return failSys("move '" + a->fsPath + "', made over the unlinked socket file, aside");
    }
    log_->debug("%s: '%s' set aside while the socket is bound there", where(e).c_str(),
                a->fsPath.c_str());
    displaced_.push_back({&e, a->fsPath, std::move(aside)});
    return {};
  });
}

Status UnixSocketKind::unlinkDeleted() {
  for (auto& [id, s] : socks_) {
    const auto& e = *s.e;
    if (!e.deleted() || e.name().empty() || e.name()[0] == '\0' || !s.fd.valid() ||
        s.role == Role::ACCEPT_VIA_TEMP || s.role == Role::HALF_CLOSED) {
      continue;
    }
    auto a = unixAddr(e.name());
    if (!a) {
      return fail(std::move(a).error().context(where(e)));
    }
    if (auto h = hidden_.find(e.id()); h != hidden_.end()) {
      // Unlinked under its own name (what the link of the file says afterwards): whatever
      // holds the path now steps aside for that moment.
      auto own = unixAddr(h->second);
      if (!own) {
        return fail(std::move(own).error().context(where(e)));
      }
      CRPIPE_TRY(atName(e, [&]() { return inDirectory(e.name_dir(), [&]() -> Status {
        const size_t before = displaced_.size();
        CRPIPE_TRY(displaceOccupant(e, true));
        if (::rename(own->fsPath.c_str(), a->fsPath.c_str()) < 0) {
          return failSys(where(e) + ": move its socket file back to " + a->fsPath);
        }
        if (::unlink(a->fsPath.c_str()) < 0) {
          return failSys(where(e) + ": unlink " + a->fsPath);
        }
        return putBack(before);
      }); }));
      continue;
    }
    // Only the file this socket made (another socket may be bound at the path by now).
    UniqueFd file(::ioctl(s.fd.get(), SIOCUNIXFILE));
    struct stat mine {}, there {};
    CRPIPE_TRY(atName(e, [&]() { return inDirectory(e.name_dir(), [&]() -> Status {
      if (file.valid() && ::fstat(file.get(), &mine) == 0 &&
          ::lstat(a->fsPath.c_str(), &there) == 0 && mine.st_ino == there.st_ino &&
          mine.st_dev == there.st_dev && ::unlink(a->fsPath.c_str()) < 0) {
        return failSys(where(e) + ": unlink " + a->fsPath);
      }
      return {};
    }); }));
  }
  hidden_.clear();
  CRPIPE_TRY(putBack(0));
  // Directories made to bind those sockets go too, once nothing is left in them (the
  // dumped tasks had removed them): innermost first.
  for (auto& [id, dirs] : madeDirs_) {
    const auto* e = entries_.at(id);
    CRPIPE_TRY(atName(*e, [&]() { return inDirectory(e->name_dir(), [&]() -> Status {
      for (auto d = dirs.rbegin(); d != dirs.rend() && ::rmdir(d->c_str()) == 0; ++d) {
      }
      return {};
    }); }));
  }
  madeDirs_.clear();
  return {};
}

Status UnixSocketKind::putBack(size_t from) {
  // Called inside the entry's mount namespace and directory (bind), or from unlinkDeleted.
  for (size_t i = from; i < displaced_.size(); ++i) {
    const auto& d = displaced_[i];
    auto back = [&]() -> Status {
      if (::rename(d.aside.c_str(), d.path.c_str()) < 0) {
        return failSys(where(*d.e) + ": put '" + d.path + "' back");
      }
      return {};
    };
    CRPIPE_TRY(from == 0 ? atName(*d.e, [&]() { return inDirectory(d.e->name_dir(), back); })
                         : back());
  }
  displaced_.resize(from);
  return {};
}

Status UnixSocketKind::hideDeleted(const images::UnixSkEntry& e) {
  auto a = unixAddr(e.name());
  if (!a || !a->path) {
    return {};
  }
  std::string own = a->fsPath + ".crpipe-" + std::to_string(::getpid()) + "-" + std::to_string(e.ino());
  if (::rename(a->fsPath.c_str(), own.c_str()) < 0) {
    return failSys("move the socket file " + a->fsPath + " to " + own);
  }
  hidden_[e.id()] = own + std::string(1, '\0');
  return {};
}

std::string UnixSocketKind::reach(const images::UnixSkEntry& e) const {
  auto it = hidden_.find(e.id());
  return it == hidden_.end() ? e.name() : it->second;
}

Status UnixSocketKind::writeMessage(const Message& m) {
  auto xit = entries_.find(m.entry.id_for());
  if (xit == entries_.end()) {
    return failMsg("a queued message for unknown socket id " + std::to_string(m.entry.id_for()));
  }
  const auto& x = *xit->second;
  auto what = [&x, this]() { return where(x) + ": queued message"; };
  // The sockets that write x's queue are x's peer, or made for it, in x's namespace.
  const auto* xp = byIno(x.peer());
  const bool dflt = ownNetns(x) && (xp == nullptr || ownNetns(*xp));
  // The files it passes: sockets made here, other descriptions opened here in this phase.
  std::vector<int> rights;
  for (const auto& scm : m.entry.scm()) {
    for (uint32_t r : scm.rights()) {
      int fd = -1;
      if (Sock* rs = local(r); rs != nullptr && rs->fd.valid()) {
        fd = rs->fd.get();
      } else if (made_ != nullptr) {
        if (auto it = made_->find(r); it != made_->end()) {
          fd = it->second.get();
        }
      }
      if (fd < 0) {
        return failMsg(what() + ": the file id " + std::to_string(r) +
                       " it passes (SCM_RIGHTS) was not made here");
      }
      rights.push_back(fd);
    }
  }
  if (x.crpipe().listener() != 0) {
    auto w = embryoWriters_.find(x.id());
    if (w == embryoWriters_.end()) {
      return failMsg(what() + ": its pending connection was not made");
    }
    return sendOne(budget_, dflt, w->second, m.data, m.entry, nullptr, rights);
  }
  if (connectionType(x)) {
    Sock* own = local(x.id());
    if (own != nullptr && own->tempPeer.valid()) {
      return sendOne(budget_, dflt, own->tempPeer.get(), m.data, m.entry, nullptr, rights);
    }
    const auto* p = byIno(x.peer());
    Sock* ps = p != nullptr ? local(p->id()) : nullptr;
    if (ps == nullptr || !ps->fd.valid()) {
      return failMsg(what() + ": its peer is not made here");
    }
    return sendOne(budget_, dflt, ps->fd.get(), m.data, m.entry, nullptr, rights);
  }
  // A datagram: from the socket bound to its sender's name, to the receiver's name (or on
  // the pair when the receiver has none; from the temporary end of a half-closed pair).
  const bool fromName = m.entry.has_addr() && !m.entry.addr().empty();
  if (Sock* own = local(x.id()); own != nullptr && own->tempPeer.valid() && !fromName) {
    return sendOne(budget_, dflt, own->tempPeer.get(), m.data, m.entry, nullptr, rights);
  }
  auto sendFrom = [&](int fd) -> Status {
    if (x.name().empty()) {
      return sendOne(budget_, dflt, fd, m.data, m.entry, nullptr, rights);
    }
    auto to = unixAddr(reach(x));
    if (!to) {
      return fail(std::move(to).error());
    }
    return atName(x, [&]() {
      return inDirectory(x.name_dir(), [&]() { return sendOne(budget_, dflt, fd, m.data, m.entry, &*to, rights); });
    });
  };
  if (fromName) {
    for (auto& [id, s] : socks_) {
      if (s.e->name() == m.entry.addr() && s.e->ns_id() == x.ns_id() && s.fd.valid()) {
        CRPIPE_TRY_CTX(sendFrom(s.fd.get()), what());
        return {};
      }
    }
    // The sender is gone: a temporary socket bound to its name sends it.
    auto t = makeSocket(x, SOCK_DGRAM);
    if (!t) {
      return fail(std::move(t).error().context(what()));
    }
    // Its name is taken where the receiver's file is (the sender reached it there).
    CRPIPE_TRY_CTX(atName(x, [&]() { return bindRaw(t->get(), m.entry.addr(), ""); }),
                   what() + " from '" + printableUnixName(m.entry.addr()) + "'");
    auto st = sendFrom(t->get());
    budget_.forget(t->get());
    auto gone = atName(x, [&]() -> Status {
      unlinkName(m.entry.addr(), "");
      return {};
    });
    if (!st) {
      return fail(std::move(st).error().context(what()));
    }
    return gone;
  }
  if (x.name().empty()) {
    const auto* p = byIno(x.peer());
    Sock* ps = p != nullptr ? local(p->id()) : nullptr;
    if (ps == nullptr || !ps->fd.valid()) {
      return failMsg(what() + ": the socket has no name and its peer is not made here");
    }
    CRPIPE_TRY_CTX(sendOne(budget_, dflt, ps->fd.get(), m.data, m.entry, nullptr, rights), what());
    return {};
  }
  auto t = makeSocket(x, SOCK_DGRAM);
  if (!t) {
    return fail(std::move(t).error().context(what()));
  }
  auto st = sendFrom(t->get());
  budget_.forget(t->get());
  CRPIPE_TRY_CTX(std::move(st), what());
  return {};
}

Status UnixSocketKind::finishSockets() {
  for (auto& [id, s] : socks_) {
    const auto& e = *s.e;
    auto w = [&e, this]() { return where(e); };
    if (!s.fd.valid()) {
      return failMsg(w() + " was not created");
    }
    if (e.type() == SOCK_DGRAM && s.role == Role::EXTERNAL && !s.connectTo.empty()) {
      CRPIPE_TRY_CTX(connectName(s.fd.get(), s.connectTo, ""), w() + ": reconnect to its outside peer");
    }
    if (e.has_shutdown() && e.shutdown() != images::NONE) {
      int how = e.shutdown() == images::READ ? SHUT_RD : e.shutdown() == images::WRITE ? SHUT_WR
                                                                                       : SHUT_RDWR;
      if (::shutdown(s.fd.get(), how) < 0 && errno != ENOTCONN) {
        return failSys(w() + ": shutdown");
      }
    }
    auto fresh = freshOpts_.find(static_cast<int>(e.type()));
    if (fresh == freshOpts_.end()) {
      auto got = freshUnixOpts(static_cast<int>(e.type()));
      if (!got) {
        return fail(std::move(got).error().context(w()));
      }
      fresh = freshOpts_.emplace(static_cast<int>(e.type()), std::move(*got)).first;
    }
    // A socket made in crpipe's network namespace whose buffer did not grow for the
    // refill still has a new socket's send buffer.
    CRPIPE_TRY_CTX(applyUnixOpts(s.fd.get(), e, fresh->second, ownNetns(e) && !budget_.grew(s.fd.get())), w());
    if ((e.flags() & O_NONBLOCK) != 0 && ::fcntl(s.fd.get(), F_SETFL, O_NONBLOCK) < 0) {
      return failSys(w() + ": F_SETFL O_NONBLOCK");
    }
    CRPIPE_TRY_CTX(applyFown(s.fd.get(), e.fown(), e.flags()), w());
  }
  return {};
}

Status UnixSocketKind::fixNames() {
  for (auto& [id, s] : socks_) {
    if (s.inFlight) {
      s.fd.reset();  // it lives on in the queue it was passed into
      continue;
    }
    const auto& e = *s.e;
    if (e.name().empty() || e.name()[0] == '\0' || !s.fd.valid()) {
      continue;
    }
    if (s.role == Role::ACCEPT_VIA_TEMP || s.role == Role::HALF_CLOSED) {
      continue;  // the name belongs to the listener, whose file went with it
    }
    auto a = unixAddr(e.name());
    if (!a) {
      return fail(std::move(a).error().context(where(e)));
    }
    if (e.deleted()) {
      continue;  // unlinked again after the refill
    }
    if (e.crpipe().has_current_path()) {
      const std::string& to = e.crpipe().current_path();
      CRPIPE_TRY(atName(e, [&]() { return inDirectory(e.name_dir(), [&]() -> Status {
        if (::rename(a->fsPath.c_str(), to.c_str()) < 0) {
          return failSys(where(e) + ": rename to its current path " + to);
        }
        return {};
      }); }));
    }
  }
  return {};
}

}  // namespace crpipe::restorer
