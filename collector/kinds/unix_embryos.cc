// The data of connections a listener has not accepted yet. No syscall reads it without
// accepting the connection (which a dump must never do), so it comes from a BPF iterator
// over the kernel's unix sockets (unix_embryo_queues.cc), once per network namespace
// that has listeners with pending connections.
#include <sys/socket.h>

#include "collector/file_table.h"
#include "collector/kinds/unix_embryo_queues.h"
#include "collector/kinds/unix_kind.h"

namespace crpipe::collector {

namespace {

std::string connectionName(uint32_t listener, uint32_t index) {
  return "connection " + std::to_string(index) + " not accepted by unix socket ino " +
         std::to_string(listener);
}

}  // namespace

Status UnixSocketKind::recordEmbryoQueues(DumpContext& ctx) {
  if (pendingListeners_.empty()) {
    return {};
  }
  // (listener, accept index) -> the embryo's entry, as recordEmbryos() made them.
  std::map<std::pair<uint32_t, uint32_t>, Recorded*> byIndex;
  for (auto& em : embryos_) {
    const auto& x = em.entry->crpipe();
    byIndex[{x.listener(), x.icon_index()}] = &em;
  }
  auto out = ctx.out.image("sk-queues.img");
  if (!out) {
    return fail(std::move(out).error());
  }
  for (const auto& [netns, listeners] : pendingListeners_) {
    auto ns = pendingNetns_.find(netns);
    auto queues = readEmbryoQueues(listeners, ns == pendingNetns_.end() ? -1 : ns->second.get());
    if (!queues) {
      // Without the reader the dump cannot know what those connections hold: refuse
      // rather than lose it.
      uint32_t first = *listeners.begin();
      const auto& rec = recorded_.at(first);
      return failMsg("unix socket ino " + std::to_string(first) + " (" + rec.where +
                     ") has connections it has not accepted yet, whose queued data cannot "
                     "be read without accepting them: " + queues.error().str() +
                     "; accept them before the dump, or run crpipe with CAP_BPF, "
                     "CAP_PERFMON and CAP_SYS_ADMIN");
    }
    size_t messages = 0;
    for (const EmbryoQueue& q : *queues) {
      auto it = byIndex.find({q.listenerIno, q.acceptIndex});
      const std::string what = connectionName(q.listenerIno, q.acceptIndex);
      if (it == byIndex.end()) {
        // A client outside the tree connected between the sock_diag dump and now.
        return failMsg(what + " appeared during the dump; dump again");
      }
      images::UnixSkEntry& e = *it->second->entry;
      if (q.peerIno != 0 && e.peer() != 0 && q.peerIno != e.peer()) {
        return failMsg(what + ": its client is ino " + std::to_string(q.peerIno) +
                       " now, ino " + std::to_string(e.peer()) + " before; dump again");
      }
      if (q.hasPeerCred && q.peerPid != 0) {
        // What SO_PEERCRED of the accepted socket will say: the restore connects the client
        // from that task (or a helper with its pid) and with those ids.
        auto* c = e.mutable_crpipe()->mutable_peercred();
        c->set_pid(q.peerPid);
        c->set_uid(q.peerUid);
        c->set_gid(q.peerGid);
      }
      for (const EmbryoMessage& m : q.messages) {
        if (m.hasRights) {
          return failMsg(what + " has " + std::to_string(m.rightsCount) +
                         " file(s) passed with SCM_RIGHTS in its queue; crpipe cannot take "
                         "files out of a connection nobody accepted; accept it before the dump");
        }
        if (m.oob) {
          return failMsg(what + " has out-of-band data (MSG_OOB) queued; crpipe cannot dump "
                         "it yet");
        }
        images::SkPacketEntry pe;
        pe.set_id_for(e.id());
        pe.set_length(static_cast<uint32_t>(m.data.size()));
        if (m.hasCreds) {
          auto* c = pe.mutable_ucred();
          c->set_pid(m.credPid);
          c->set_uid(m.credUid);
          c->set_gid(m.credGid);
        }
        CRPIPE_TRY(ctx.out.entry(*out, pe));
        CRPIPE_TRY(ctx.out.raw(*out, m.data));
        ++messages;
      }
      // What was only an estimate from the client's side is now read.
      e.mutable_crpipe()->clear_embryo_unread();
    }
    ctx.log.info("unix: read %zu not-yet-accepted connections (%zu messages) in net namespace %lu",
                 queues->size(), messages, static_cast<unsigned long>(netns));
  }
  return {};
}

}  // namespace crpipe::collector
