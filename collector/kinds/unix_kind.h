#pragma once

#include <cstdint>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "collector/kinds/fd_kind.h"
#include "collector/mount_ns.h"
#include "collector/kinds/unix_diag.h"
#include "collector/kinds/unix_queue.h"
#include "common/unique_fd.h"
#include <google/protobuf/arena.h>

#include "protos/fdinfo.pb.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::collector {

// Unix domain sockets: one sock_diag table per network namespace (prepare), options and
// the bound file read through the collector's duplicate and the receive queue peeked
// without consuming it (collect), then the checks that need every socket: peers outside
// the tree, connections a listener has not accepted yet (finish). Entries go to files.img
// in finish(), once peers are settled; queued messages go to sk-queues.img as they are read.
class UnixSocketKind : public FdKind {
 public:
  std::string_view name() const override { return "unix socket"; }
  images::FdTypes type() const override { return images::UNIXSK; }
  bool matches(const OpenFile& f) const override;
  // The socket's family, options and owner, read on the fd-grabbing thread.
  void readAhead(OpenFile& f, ReadAheadContext& ctx) const override;
  Status prepare(DumpContext& ctx) override;
  Status collect(DumpContext& ctx, OpenFile& f, uint32_t id) override;
  Status finish(DumpContext& ctx) override;

 private:
  struct Recorded {
    images::UnixSkEntry* entry = nullptr;  // on arena_
    std::string where;  // "fd 5 of pid 300", for errors
  };

  // A new entry on arena_.
  images::UnixSkEntry* newEntry() {
    return google::protobuf::Arena::CreateMessage<images::UnixSkEntry>(&arena_);
  }
  // Its FileEntry into files.img, without copying it.
  Status writeEntry(DumpContext& ctx, images::UnixSkEntry* e);

  Status addNamespace(DumpContext& ctx, uint64_t netnsIno, int netnsFd);
  Result<const UnixDiagTable::Known*> lookup(DumpContext& ctx, OpenFile& f);
  // The queue from the fast path's records when it read it whole, else peeked.
  Status recordQueue(DumpContext& ctx, OpenFile& f, uint32_t id, int type, int peekOff,
                     bool passCred, std::optional<uint32_t> queued, const FastUnix* fast,
                     std::optional<std::vector<PeekedMessage>> peeked);
  Status notePendingListener(OpenFile& f, uint32_t ino, uint64_t netnsIno);
  Status settlePeer(DumpContext& ctx, Recorded& r);
  Status markExternal(DumpContext& ctx, Recorded& r, uint32_t peerIno);
  void recordEmbryos(DumpContext& ctx, const Recorded& listener);
  // The queues of not-yet-accepted connections, read by a BPF iterator (unix_embryos.cc).
  Status recordEmbryoQueues(DumpContext& ctx);
  Status writeExternalPeer(DumpContext& ctx, uint32_t peerIno);

  // Every entry of the dump lives here: thousands of entries with their nested messages
  // and strings are freed as a few blocks, and a FileEntry takes one without a copy.
  // Declared first, so that it outlives everything that points into it.
  google::protobuf::Arena arena_;
  // The sock_diag dumps of the tree's network namespaces, made at the first lookup (or
  // started by prepare() on a thread of their own, for a tree with large fd tables).
  Status loadNamespaces(DumpContext& ctx);
  using NamespaceDump = std::pair<uint64_t, Result<std::vector<UnixDiagSocket>>>;
  // The dumps of `todo` (netns inode, a pid in it), stopping after the first failure.
  static std::vector<NamespaceDump> dumpNamespaces(
      const std::vector<std::pair<uint64_t, pid_t>>& todo, uint64_t self);
  Status addDump(DumpContext& ctx, NamespaceDump dump);
  std::future<std::vector<NamespaceDump>> early_;

  UnixDiagTable table_;
  uint64_t selfNetns_ = 0;
  std::vector<std::pair<uint64_t, pid_t>> netnsToLoad_;  // (netns inode, a pid in it)
  std::map<uint32_t, Recorded> recorded_;  // by inode
  std::vector<Recorded> embryos_;
  std::set<uint32_t> externalPeers_;
  // Listeners with pending connections, by network namespace inode, and a handle on each
  // such namespace other than the collector's (the BPF iterator walks one namespace).
  std::map<uint64_t, std::set<uint32_t>> pendingListeners_;
  std::map<uint64_t, UniqueFd> pendingNetns_;
  std::vector<char> scratch_;  // the peek buffer, reused for every socket
  MountNamespaces mountNs_;    // where socket files outside the collector's namespace live
};

}  // namespace crpipe::collector
