// UnixSocketKind::finish(): what needs every socket of the dump at once — peers outside
// the tree, connections a listener has not accepted yet — then the entries are written.
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "collector/file_table.h"
#include "collector/kinds/unix_kind.h"

namespace crpipe::collector {

namespace {

constexpr uint32_t kUskExtern = 1u << 0;  // CRIU: the entry is a socket outside the tree

void fillEmpty(images::UnixSkEntry& e) {
  auto* fown = e.mutable_fown();
  fown->set_uid(0);
  fown->set_euid(0);
  fown->set_signum(0);
  fown->set_pid_type(0);
  fown->set_pid(0);
  auto* o = e.mutable_opts();
  o->set_so_sndbuf(0);
  o->set_so_rcvbuf(0);
  o->set_so_snd_tmo_sec(0);
  o->set_so_snd_tmo_usec(0);
  o->set_so_rcv_tmo_sec(0);
  o->set_so_rcv_tmo_usec(0);
}


// RCV_SHUTDOWN on one end of a connection is SEND_SHUTDOWN on the other.
uint32_t swapShutdown(uint32_t s) { return ((s & 1) << 1) | ((s & 2) >> 1); }

}  // namespace

Status UnixSocketKind::writeEntry(DumpContext& ctx, images::UnixSkEntry* e) {
  auto* fe = google::protobuf::Arena::CreateMessage<images::FileEntry>(&arena_);
  fe->set_type(images::UNIXSK);
  fe->set_id(e->id());
  fe->unsafe_arena_set_allocated_usk(e);  // both on arena_
  return ctx.out.entryTo("files.img", *fe);
}

Status UnixSocketKind::markExternal(DumpContext& ctx, Recorded& r, uint32_t peerIno) {
  images::UnixSkEntry& e = *r.entry;
  const auto* peer = table_.find(peerIno);
  std::string peerName = peer != nullptr && peer->sk.name ? *peer->sk.name : "";
  std::string ino = std::to_string(e.ino());
  bool inherit = ctx.opts.isExternal("unix[" + ino + "]");
  bool byIno = ctx.opts.extUnixSkInodes.count(e.ino()) != 0;
  // Plain --ext-unix-sk covers one-way datagram clients only: restore reconnects them to
  // the server's name, so the server needs one.
  bool dgram = ctx.opts.extUnixSk && e.type() == SOCK_DGRAM && !peerName.empty();
  if (!inherit && !byIno && !dgram) {
    std::string how = e.type() == SOCK_DGRAM && !peerName.empty()
                          ? "--ext-unix-sk or --external unix[" + ino + "]"
                          : "--ext-unix-sk=" + ino + " or --external unix[" + ino + "]";
    return failMsg("unix socket ino " + ino + " (" + r.where + ") is connected to ino " +
                   std::to_string(peerIno) + " (name '" + printableUnixName(peerName) +
                   "') outside the dumped tree; use " + how);
  }
  auto* x = e.mutable_crpipe();
  x->set_peer_external(true);
  x->set_ext_peer_name(peerName);
  if (inherit) {
    x->set_ext_inherit(true);
  }
  externalPeers_.insert(peerIno);
  ctx.log.info("unix: socket ino %s (%s) has its peer %u ('%s') outside the tree: external",
               ino.c_str(), r.where.c_str(), peerIno, printableUnixName(peerName).c_str());
  return {};
}

Status UnixSocketKind::settlePeer(DumpContext& ctx, Recorded& r) {
  images::UnixSkEntry& e = *r.entry;
  if (e.peer() != 0) {
    auto it = recorded_.find(e.peer());
    if (it == recorded_.end()) {
      return markExternal(ctx, r, e.peer());
    }
    const auto& pe = *it->second.entry;
    if (pe.peer() != e.ino() && pe.name().empty()) {
      ctx.log.warn("unix: socket ino %u is connected to ino %u, which is connected elsewhere "
                   "and has no name", e.ino(), e.peer());
    }
    return {};
  }
  if (e.state() != TCP_ESTABLISHED || e.type() == SOCK_DGRAM) {
    return {};
  }
  // A connected stream/seqpacket socket with no peer inode: either the client of a
  // connection a listener has not accepted (the embryo at the other end has no inode;
  // its listener lists us in ICONS), or a peer that was closed (then we are shut down).
  auto listener = table_.listenerOfClient(e.ino());
  if (!listener) {
    return {};
  }
  // As CRIU records it: the in-flight client's peer is the listener it waits on.
  e.set_peer(*listener);
  if (recorded_.count(*listener) == 0) {
    return markExternal(ctx, r, *listener);
  }
  return {};
}

void UnixSocketKind::recordEmbryos(DumpContext& ctx, const Recorded& listener) {
  const images::UnixSkEntry& l = *listener.entry;
  const auto& icons = l.crpipe().icons();
  for (int i = 0; i < icons.size(); ++i) {
    uint32_t client = icons[i];
    Recorded em;
    em.where = "connection " + std::to_string(i) + " not accepted by ino " +
               std::to_string(l.ino());
    em.entry = newEntry();
    images::UnixSkEntry& e = *em.entry;
    fillEmpty(e);
    e.set_id(ctx.files.newId());
    e.set_ino(0);  // an embryo has no inode until accept() gives it a file
    e.set_type(l.type());
    e.set_state(TCP_ESTABLISHED);
    e.set_flags(O_RDWR);
    e.set_uflags(0);
    e.set_backlog(0);
    e.set_peer(client);
    // accept() hands out the listener's address as the new socket's name.
    e.set_name(l.name());
    e.set_ns_id(l.ns_id());
    auto* x = e.mutable_crpipe();
    x->set_listener(l.ino());
    x->set_icon_index(static_cast<uint32_t>(i));
    x->set_origin("embryo");
    x->set_netns_ino(l.crpipe().netns_ino());
    if (client == 0) {
      // The client closed: its release shut the embryo down both ways.
      e.set_shutdown(images::BOTH);
    } else if (const auto* c = table_.find(client)) {
      uint32_t sh = swapShutdown(c->sk.shutdown.value_or(0));
      if (sh != 0) {
        e.set_shutdown(static_cast<images::SkShutdown>(sh));
      }
      // The client's wqueue counts what it sent and nobody read: the embryo's queue.
      uint32_t inflight = c->sk.wqueue.value_or(0);
      if (inflight != 0) {
        // An estimate until recordEmbryoQueues() reads the queue itself.
        x->set_embryo_unread(inflight);
      }
      if (recorded_.count(client) == 0) {
        // A server's pending connection from a client outside the tree is normal; it is
        // recorded with its peer marked external rather than refused.
        x->set_peer_external(true);
        x->set_ext_peer_name(c->sk.name.value_or(""));
      }
    } else {
      x->set_peer_external(true);
    }
    embryos_.push_back(std::move(em));
  }
}

Status UnixSocketKind::writeExternalPeer(DumpContext& ctx, uint32_t peerIno) {
  // CRIU's shape for a socket outside the tree: an entry of its own, USK_EXTERN, with the
  // name to reconnect to; the inside socket keeps `peer` = this inode.
  images::UnixSkEntry& e = *newEntry();
  fillEmpty(e);
  e.set_id(ctx.files.newId());
  e.set_ino(peerIno);
  e.set_type(SOCK_DGRAM);
  e.set_state(TCP_LISTEN);
  e.set_flags(0);
  e.set_uflags(kUskExtern);
  e.set_backlog(0);
  e.set_peer(0);
  e.set_name("");
  auto* x = e.mutable_crpipe();
  x->set_origin("external");
  if (const auto* p = table_.find(peerIno)) {
    e.set_type(p->sk.type);
    e.set_state(p->sk.state);
    e.set_name(p->sk.name.value_or(""));
    e.set_ns_id(p->nsId);
    x->set_netns_ino(p->netnsIno);
  }
  return writeEntry(ctx, &e);
}

Status UnixSocketKind::finish(DumpContext& ctx) {
  for (auto& [ino, rec] : recorded_) {
    CRPIPE_TRY(settlePeer(ctx, rec));
  }
  for (const auto& [ino, rec] : recorded_) {
    if (rec.entry->state() == TCP_LISTEN && rec.entry->crpipe().icons_size() > 0) {
      recordEmbryos(ctx, rec);
    }
  }
  CRPIPE_TRY(recordEmbryoQueues(ctx));
  for (const auto& [ino, rec] : recorded_) {
    CRPIPE_TRY(writeEntry(ctx, rec.entry));
  }
  for (const auto& em : embryos_) {
    CRPIPE_TRY(writeEntry(ctx, em.entry));
  }
  for (uint32_t peer : externalPeers_) {
    CRPIPE_TRY(writeExternalPeer(ctx, peer));
  }
  ctx.log.info("unix: %zu sockets, %zu not-yet-accepted connections, %zu external peers",
               recorded_.size(), embryos_.size(), externalPeers_.size());
  return {};
}

}  // namespace crpipe::collector
