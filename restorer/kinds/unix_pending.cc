// Connections a listener had not accepted (issue 5, items 3 and 5): the pendingConnect
// phase. SO_PEERCRED of the socket accept() will return is stamped by the kernel at
// connect() from the caller (its tgid, its effective uid and gid), and accept() returns
// connections in the order they were made. So each client connects from the task the
// embryo's recorded SO_PEERCRED names (the coordinator routes it there; a helper with that
// pid when the task exited, PeerCreds), with those ids, and the coordinator sequences the
// connects across tasks in rounds: this file does one task's share of one round.
#include <sys/socket.h>

#include <optional>

#include "restorer/kinds/unix_addr.h"
#include "restorer/kinds/unix_kind.h"

namespace crpipe::restorer {

Status UnixSocketKind::connectPending(uint32_t round) {
  size_t connected = 0;
  // Temporary clients (the original had closed, or it is outside the tree): closed once
  // their data is written, which shuts the connection down both ways, as it was.
  std::vector<UniqueFd> closed;
  for (const PendingConnect& pc : pendingConnects_) {
    if (pc.round != round) {
      continue;
    }
    const auto& em = *entries_.at(pc.embryo);
    const auto* l = byIno(em.crpipe().listener());
    const std::string what = "connection " + std::to_string(em.crpipe().icon_index()) +
                             " not accepted by unix socket ino " +
                             std::to_string(em.crpipe().listener());
    if (l == nullptr) {
      return failMsg(what + ": its listener's entry is not in the task order");
    }
    int client = -1;
    if (const auto* c = byIno(em.peer()); c != nullptr && !em.crpipe().peer_external()) {
      Sock* cs = local(c->id());
      if (cs == nullptr || !cs->fd.valid()) {
        return failMsg(what + ": its client ino " + std::to_string(c->ino()) +
                       " is not made by this task");
      }
      client = cs->fd.get();
    } else {
      auto t = makeSocket(*l, static_cast<int>(l->type()));
      if (!t) {
        return fail(std::move(t).error().context(what));
      }
      client = t->get();
      closed.push_back(std::move(*t));
    }
    // A listener of this task that was unlinked may sit at a path of its own (reach);
    // one that other tasks connect to kept its path (UnixSocketOrder.keepPath).
    CRPIPE_TRY_CTX(creds_.as(recordedPeerCred(em),
                             [&]() {
                               return atName(*l, [&]() {
                                 return connectName(client, reach(*l), l->name_dir());
                               });
                             }),
                   what);
    embryoWriters_[em.id()] = client;
    ++connected;
  }
  if (connected == 0) {
    return {};
  }
  // What the clients had sent: nothing else writes to these connections, so it goes now,
  // while the temporary clients are still open. The kernel stamps credentials on all of
  // it (the embryo had no socket yet).
  CRPIPE_TRY(mapQueueData());
  learnDefaultSendBuffer();
  CRPIPE_TRY_CTX(writeMessages([this](const Message& m) {
                   return embryoWriters_.contains(m.entry.id_for());
                 }),
                 "a queued message of a pending connection");
  budget_.clear();
  for (const auto& c : closed) {
    budget_.forget(c.get());
  }
  dataMaps_.clear();
  for (auto& m : queue_) {
    m.data = {};
  }
  embryoWriters_.clear();
  log_->debug("pending-connect round %u: %zu connection(s) made", round + 1, connected);
  return {};
}

}  // namespace crpipe::restorer
