#include "coordinator/unix_plan.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "protos/sk_unix.pb.h"

namespace crpipe {

namespace {

constexpr uint32_t kUskExtern = 1u << 0;  // CRIU: an entry for a socket outside the tree

struct Sock {
  uint32_t id = 0;
  images::UnixSkEntry* e = nullptr;
};

class UnionFind {
 public:
  uint32_t find(uint32_t x) {
    auto it = parent_.try_emplace(x, x).first;
    if (it->second == x) {
      return x;
    }
    uint32_t r = find(it->second);
    parent_[x] = r;
    return r;
  }
  void join(uint32_t a, uint32_t b) { parent_[find(a)] = find(b); }

 private:
  std::unordered_map<uint32_t, uint32_t> parent_;
};

// A recorded name as users spell it: a path (without the kernel's trailing NUL) or
// "@" and the abstract name.
std::string spell(const std::string& raw) {
  if (raw.empty()) {
    return raw;
  }
  if (raw[0] == '\0') {
    return "@" + raw.substr(1);
  }
  return std::string(raw.c_str());
}

std::string unspell(const std::string& s) {
  if (!s.empty() && s[0] == '@') {
    return std::string(1, '\0') + s.substr(1);
  }
  return s + std::string(1, '\0');
}

// --unix-name-map: an exact name, or a directory prefix (OLD ends with '/').
std::optional<std::string> mapName(const PlanOptions& opts, const std::string& raw) {
  if (raw.empty() || opts.unixNameMap.empty()) {
    return std::nullopt;
  }
  const std::string s = spell(raw);
  for (const auto& [from, to] : opts.unixNameMap) {
    if (s == from) {
      return unspell(to);
    }
    if (from.ends_with('/') && s.starts_with(from)) {
      return unspell(to + (to.ends_with('/') ? "" : "/") + s.substr(from.size()));
    }
  }
  return std::nullopt;
}

std::string sockWhere(const images::UnixSkEntry& e) {
  return "unix socket ino " + std::to_string(e.ino()) + " (id " + std::to_string(e.id()) + ")";
}

bool isEmbryo(const images::UnixSkEntry& e) { return e.crpipe().listener() != 0; }
bool isExtern(const images::UnixSkEntry& e) { return (e.uflags() & kUskExtern) != 0; }
bool connectionType(const images::UnixSkEntry& e) {
  return e.type() == SOCK_STREAM || e.type() == SOCK_SEQPACKET;
}

}  // namespace

Status planUnixSockets(const RestoreImages& images, const PlanOptions& opts, RestorePlan& plan,
                       std::map<uint32_t, pid_t>& creator) {
  // Every unix entry but external peers, in id order, and where each id is: the plan is
  // walked in id order (deterministic), looked up by hash (10,000s of sockets).
  std::vector<Sock> socks;
  std::unordered_map<uint32_t, size_t> sockAt;
  std::unordered_map<uint32_t, uint32_t> byIno;  // ino -> id (sockets with an inode)
  auto sockOf = [&socks, &sockAt](uint32_t id) -> Sock& { return socks[sockAt.at(id)]; };
  for (auto& [id, fe] : plan.files) {
    if (fe.type() != images::UNIXSK || isExtern(fe.usk())) {
      continue;
    }
    images::UnixSkEntry* e = fe.mutable_usk();
    // --unix-name-map rewrites the names before anything is planned from them.
    if (auto m = mapName(opts, e->name())) {
      e->set_name(*m);
      plan.fileBytes.erase(id);
    }
    if (e->crpipe().has_current_path()) {
      if (auto m = mapName(opts, e->crpipe().current_path() + std::string(1, '\0'))) {
        e->mutable_crpipe()->set_current_path(m->c_str());
        plan.fileBytes.erase(id);
      }
    }
    if (auto m = mapName(opts, e->crpipe().ext_peer_name())) {
      e->mutable_crpipe()->set_ext_peer_name(*m);
      plan.fileBytes.erase(id);
    }
    sockAt.emplace(id, socks.size());
    socks.push_back(Sock{id, e});
    if (e->ino() != 0) {
      byIno[e->ino()] = id;
    }
  }
  if (socks.empty()) {
    return {};
  }
  std::vector<std::pair<uint32_t, uint32_t>> passed;  // (carrier socket, passed file) ids
  for (const auto& e : images.entries("sk-queues.img")) {
    images::SkPacketEntry pe;
    if (!pe.ParseFromString(e.payload)) {
      return failMsg("sk-queues.img: malformed entry");
    }
    if (!sockAt.contains(pe.id_for())) {
      return failMsg("sk-queues.img: a message for socket id " + std::to_string(pe.id_for()) +
                     ", which files.img does not have");
    }
    for (const auto& scm : pe.scm()) {
      for (uint32_t r : scm.rights()) {
        auto f = plan.files.find(r);
        if (f == plan.files.end()) {
          return failMsg(sockWhere(*sockOf(pe.id_for()).e) + ": a queued message passes file id " +
                         std::to_string(r) + ", which files.img does not have");
        }
        passed.emplace_back(pe.id_for(), r);
      }
    }
    QueuedMessage m{&e, {}};
    if (pe.has_addr()) {
      if (auto mapped = mapName(opts, pe.addr())) {
        pe.set_addr(*mapped);
        m.rewritten = pe.SerializeAsString();
      }
    }
    plan.skQueues[pe.id_for()].push_back(std::move(m));
  }

  // Holders in pstree and fd order; the first holder of a group makes it unless SO_PEERCRED
  // names a task of the tree.
  std::unordered_map<uint32_t, pid_t> firstHolder;
  std::unordered_set<pid_t> inTree;
  std::unordered_map<pid_t, size_t> taskOrder;  // pstree position
  for (const auto& t : plan.tasks) {
    inTree.insert(t.pid);
    taskOrder.emplace(t.pid, taskOrder.size());
    for (const auto& fd : t.fds) {
      if (sockAt.contains(fd.id())) {
        firstHolder.try_emplace(fd.id(), t.pid);
      }
    }
  }
  auto credPid = [&inTree](const images::UnixSkEntry& e) -> pid_t {
    if (!e.crpipe().has_peercred()) {
      return 0;
    }
    auto p = static_cast<pid_t>(e.crpipe().peercred().pid());
    return inTree.contains(p) ? p : 0;
  };
  auto peerOf = [&](const images::UnixSkEntry& e) -> images::UnixSkEntry* {
    auto it = byIno.find(e.peer());
    return it == byIno.end() ? nullptr : sockOf(it->second).e;
  };

  // Groups.
  UnionFind uf;
  std::map<std::pair<uint32_t, std::string>, uint32_t> byName;
  for (auto& s : socks) {
    const uint32_t id = s.id;
    uf.find(id);
    const auto& e = *s.e;
    if (isEmbryo(e)) {
      auto l = byIno.find(e.crpipe().listener());
      if (l == byIno.end()) {
        return failMsg("a connection not accepted by ino " + std::to_string(e.crpipe().listener()) +
                       ": the listener is not in the dump");
      }
      uf.join(id, l->second);
    }
    if (auto* p = peerOf(e)) {
      uf.join(id, p->id());
    }
    if (!e.name().empty()) {
      auto [it, fresh] = byName.try_emplace({e.ns_id(), e.name()}, id);
      if (!fresh) {
        uf.join(id, it->second);
      }
    }
  }
  // A socket passed in a queued message is made by the task that writes that message.
  for (const auto& [carrier, file] : passed) {
    if (sockAt.contains(file)) {
      uf.join(file, carrier);
    }
  }
  for (const auto& [id, q] : plan.skQueues) {
    for (const auto& m : q) {
      images::SkPacketEntry pe;
      auto entry = m.entry();
      pe.ParseFromArray(entry.data(), static_cast<int>(entry.size()));
      if (pe.has_addr() && !pe.addr().empty()) {
        auto it = byName.find({sockOf(id).e->ns_id(), pe.addr()});
        if (it != byName.end()) {
          uf.join(id, it->second);
        }
      }
    }
  }
  std::map<uint32_t, std::vector<uint32_t>> groups;
  for (const auto& s : socks) {
    groups[uf.find(s.id)].push_back(s.id);
  }

  std::map<pid_t, TaskPlan*> byPid;
  std::unordered_set<uint32_t> held;
  for (auto& t : plan.tasks) {
    byPid[t.pid] = &t;
    for (const auto& fd : t.fds) {
      held.insert(fd.id());
    }
  }
  std::map<pid_t, std::set<uint32_t>> refs;  // task -> group ids it needs to know
  std::unordered_map<uint32_t, pid_t> groupMaker;  // group -> task
  for (const auto& [root, ids] : groups) {
    // Who makes the group: a listener's listen() caller, else the client side a
    // connection reports, else the first holder.
    pid_t maker = 0;
    for (uint32_t id : ids) {
      const auto& e = *sockOf(id).e;
      if (e.state() == TCP_LISTEN && credPid(e) != 0) {
        maker = credPid(e);
        break;
      }
    }
    for (uint32_t id : ids) {
      const auto& e = *sockOf(id).e;
      const auto* p = peerOf(e);
      if (maker == 0 && connectionType(e) && p != nullptr && p->peer() == e.ino() &&
          credPid(e) != 0) {
        maker = credPid(e);
      }
    }
    pid_t holder = 0;
    size_t holderOrder = plan.tasks.size();
    for (uint32_t id : ids) {
      if (auto h = firstHolder.find(id); h != firstHolder.end() && taskOrder.at(h->second) < holderOrder) {
        holder = h->second;
        holderOrder = taskOrder.at(h->second);
      }
    }
    if (maker == 0) {
      maker = holder;
    }
    if (maker == 0) {
      return failMsg(sockWhere(*sockOf(ids.front()).e) +
                     " is held by no task (only in a queued message); restoring such sockets "
                     "is not implemented yet");
    }
    groupMaker[root] = maker;
  }

  // Connections a listener had not accepted: each client connects from the task its
  // embryo's SO_PEERCRED names (the kernel takes the accepted end's from the connect()
  // caller), else from the listener's group maker (with a helper of that pid when it
  // exited). A listener's accept queue is cut into runs of consecutive connections of one
  // task; run k connects in round k of the pendingConnect phase, so the queue keeps its
  // order across tasks.
  std::map<uint32_t, pid_t> connectorOf;  // embryo id -> the task that connects it
  std::map<uint32_t, pid_t> clientMaker;  // client socket id -> that task
  std::set<uint32_t> keepPath;            // listener ids (see UnixSocketOrder.keepPath)
  {
    std::map<uint32_t, std::vector<const images::UnixSkEntry*>> byListener;
    for (const auto& s : socks) {
      if (isEmbryo(*s.e)) {
        byListener[s.e->crpipe().listener()].push_back(s.e);
      }
    }
    for (auto& [lino, ems] : byListener) {
      std::sort(ems.begin(), ems.end(), [](const auto* a, const auto* b) {
        return a->crpipe().icon_index() < b->crpipe().icon_index();
      });
      const uint32_t lid = byIno.at(lino);
      const pid_t maker = groupMaker.at(uf.find(lid));
      uint32_t round = 0;
      pid_t prev = 0;
      for (const auto* em : ems) {
        pid_t by = credPid(*em);
        if (by == 0) {
          by = maker;
        }
        if (prev != 0 && by != prev) {
          ++round;
        }
        prev = by;
        connectorOf[em->id()] = by;
        byPid.at(by)->pendingConnects.emplace_back(em->id(), round);
        refs[by].insert(uf.find(em->id()));
        if (by != maker && sockOf(lid).e->deleted()) {
          keepPath.insert(lid);
        }
        if (const auto* c = peerOf(*em); c != nullptr && !em->crpipe().peer_external()) {
          clientMaker[c->id()] = by;
        }
      }
      plan.connectRounds = std::max(plan.connectRounds, round + 1);
    }
  }

  // Roles.
  for (auto& s : socks) {
    const uint32_t id = s.id;
    const auto& e = *s.e;
    if (isEmbryo(e)) {
      continue;  // made by its listener's group when the client connects
    }
    const uint32_t group = uf.find(id);
    const pid_t maker = groupMaker.at(group);
    TaskPlan::UnixOrder o;
    o.fileId = id;
    pid_t by = maker;
    const std::string ino = std::to_string(e.ino());
    if (e.crpipe().peer_external()) {
      if (e.crpipe().ext_inherit()) {
        // Checked by makeRestorePlan: --inherit-fd fd[N]:socket:[INO] gives it.
        o.role = proto::UnixRole::INHERITED;
        if (plan.skQueues.contains(id)) {
          return failMsg(sockWhere(e) + " (--external unix[" + ino + "]) had " +
                         std::to_string(plan.skQueues.at(id).size()) +
                         " queued message(s); the inherited socket's queue is the outside "
                         "peer's to refill, crpipe cannot write it back");
        }
        creator[id] = by;
        byPid.at(by)->unixOrders.push_back(o);
        refs[by].insert(group);
        continue;
      }
      o.role = proto::UnixRole::EXTERNAL;
      auto named = opts.extUnixSkInodes.find(e.ino());
      if (opts.unixDead.contains(e.ino())) {
        o.connectTo.clear();
      } else if (named != opts.extUnixSkInodes.end()) {
        o.connectTo = named->second.empty() ? e.crpipe().ext_peer_name()
                                            : named->second + std::string(1, '\0');
      } else if (opts.extUnixSk && e.type() == SOCK_DGRAM) {
        o.connectTo = e.crpipe().ext_peer_name();
      } else {
        return failMsg(sockWhere(e) + " had its peer outside the tree (name '" +
                       spell(e.crpipe().ext_peer_name()) + "'); restore it with --ext-unix-sk" +
                       (e.type() == SOCK_DGRAM ? "" : "=" + ino + "[=PATH]") +
                       " to reconnect, or --ext-unix-sk-dead " + ino + " for a dead connection");
      }
      if (o.connectTo.empty() && !opts.unixDead.contains(e.ino())) {
        return failMsg(sockWhere(e) + ": its outside peer had no name to reconnect to; use "
                       "--ext-unix-sk=" + ino + "=PATH or --ext-unix-sk-dead " + ino);
      }
    } else if (connectionType(e) && e.state() == TCP_ESTABLISHED) {
      auto* p = peerOf(e);
      if (e.peer() == 0 || p == nullptr) {
        o.role = proto::UnixRole::HALF_CLOSED;
      } else if (p->peer() != e.ino()) {
        o.role = proto::UnixRole::PLAIN;  // a client whose connection is not accepted yet
        if (auto c = clientMaker.find(id); c != clientMaker.end()) {
          by = c->second;  // made where it connects (pendingConnect)
        }
      } else if (e.name().empty() && p->name().empty()) {
        o.role = e.id() < p->id() ? proto::UnixRole::PAIR_FIRST : proto::UnixRole::PAIR_SECOND;
        o.partner = p->id();
      } else {
        // The accepted end is the one with a name (its listener's); with two names, either
        // end can be: each keeps its own and its peer's.
        bool server = !e.name().empty() && (p->name().empty() || e.id() < p->id());
        o.role = server ? proto::UnixRole::ACCEPT_VIA_TEMP : proto::UnixRole::CONNECT_VIA_TEMP;
        o.partner = p->id();
        if (!server && credPid(*p) != 0) {
          by = credPid(*p);  // SO_PEERCRED of the accepted end names who connected
        }
      }
    } else if (e.type() == SOCK_DGRAM && e.state() == TCP_ESTABLISHED && e.name().empty() &&
               peerOf(e) == nullptr) {
      // One end of a dgram socketpair whose other end was closed: still "connected" to the
      // dead end, maybe with data it had sent. Made as a pair whose temporary end writes
      // that data and is closed.
      o.role = proto::UnixRole::HALF_CLOSED;
    } else if (e.type() == SOCK_DGRAM && e.peer() != 0) {
      auto* p = peerOf(e);
      if (p != nullptr && e.name().empty() && p->name().empty() && p->peer() == e.ino() &&
          p->id() != e.id()) {
        o.role = e.id() < p->id() ? proto::UnixRole::PAIR_FIRST : proto::UnixRole::PAIR_SECOND;
        o.partner = p->id();
      } else if (p != nullptr && p->name().empty()) {
        return failMsg(sockWhere(e) + " is connected to ino " + std::to_string(p->ino()) +
                       ", which has no name to connect to");
      }
    }
    o.inFlight = !held.contains(id);
    o.keepPath = keepPath.contains(id);
    creator[id] = by;
    byPid.at(by)->unixOrders.push_back(o);
    refs[by].insert(group);
  }
  // Who writes each queue back.
  std::unordered_map<uint32_t, pid_t> writerOf;
  for (const auto& [id, q] : plan.skQueues) {
    const auto& e = *sockOf(id).e;
    pid_t writer = groupMaker.at(uf.find(id));
    if (isEmbryo(e)) {
      writer = connectorOf.at(id);  // it holds the client (or the temporary one)
    } else if (connectionType(e) && e.crpipe().peer_external()) {
      writer = creator.at(id);
    } else if (connectionType(e)) {
      auto* p = peerOf(e);
      if (p != nullptr && p->peer() == e.ino()) {
        writer = creator.at(p->id());
      } else {
        writer = creator.at(id);  // half-closed: its temporary peer writes
      }
    }
    byPid.at(writer)->queueWrites.push_back(id);
    refs[writer].insert(uf.find(id));
    writerOf[id] = writer;
  }
  // Files passed with SCM_RIGHTS: the writer of the message opens them in refillQueues
  // (every description of a passed pipe, so that they stay one pipe) and hands them to
  // the tasks that hold them too in shareFds.
  std::map<uint32_t, pid_t> scmOwner;
  for (const auto& [carrier, file] : passed) {
    const pid_t w = writerOf.at(carrier);
    const auto& fe = plan.files.at(file);
    const std::string what = sockWhere(*sockOf(carrier).e) + ": a queued message passes ";
    if (fe.type() == images::UNIXSK) {
      if (!sockAt.contains(file)) {
        return failMsg(what + "unix socket ino " + std::to_string(fe.usk().ino()) +
                       ", whose peer is outside the tree; restoring that is not implemented");
      }
      if (creator.at(file) != w) {
        return failMsg(what + sockWhere(*sockOf(file).e) + ", which pid " +
                       std::to_string(creator.at(file)) + " makes, but pid " + std::to_string(w) +
                       " writes the message; restoring that is not implemented");
      }
      continue;
    }
    std::vector<uint32_t> group;
    if (fe.type() == images::REG) {
      group.push_back(file);
    } else if (fe.type() == images::PIPE) {
      for (const auto& [id, other] : plan.files) {
        if (other.type() == images::PIPE && other.pipe().pipe_id() == fe.pipe().pipe_id()) {
          group.push_back(id);
        }
      }
    } else {
      return failMsg(what + "a file of type " + images::FdTypes_Name(fe.type()) +
                     " (id " + std::to_string(file) + "); restoring that is not implemented");
    }
    for (uint32_t id : group) {
      auto [it, fresh] = scmOwner.try_emplace(id, w);
      if (!fresh && it->second != w) {
        return failMsg(what + "file id " + std::to_string(id) + ", which pid " +
                       std::to_string(it->second) + " passes too; restoring a file passed by two "
                       "tasks is not implemented");
      }
      if (fresh) {
        creator[id] = w;
        byPid.at(w)->scmFiles.push_back(id);
      }
    }
  }
  for (auto& [pid, gs] : refs) {
    TaskPlan& t = *byPid.at(pid);
    for (uint32_t g : gs) {
      for (uint32_t id : groups.at(g)) {
        t.unixRefs.push_back(id);
      }
    }
    // External peers' own entries (their names) travel too.
    for (const auto& [id, fe] : plan.files) {
      if (fe.type() == images::UNIXSK && isExtern(fe.usk())) {
        t.unixRefs.push_back(id);
      }
    }
  }
  return {};
}

}  // namespace crpipe
