#pragma once

#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protos/sk_unix.pb.h"
#include "restorer/kinds/restore_kind.h"
#include "restorer/kinds/unix_creds.h"
#include "restorer/kinds/unix_opts.h"

namespace crpipe::restorer {

// Unix sockets (issue 5). The coordinator's planner (coordinator/unix_plan.cc) says how
// each socket of this task comes to be (a UnixRole) and which queues this task writes
// back; every socket then walks the unix phases, each step in the phase where every
// other task has done what it depends on:
//   bindListen    socket(), socketpair(), bind the name, listen; temporary listeners at
//                 the names of accepted sockets (a listener that shares such a name waits)
//   connect       clients of connections connect to those temporary listeners, with a tag
//   accept        accept, tell the connections apart by their tags, close the temporary
//                 listeners, then bind and listen the listeners that waited
//   pendingConnect  the clients of pending (not accepted) connections this task connects
//                 (each from the task its embryo's SO_PEERCRED names), in accept order,
//                 round by round, each writing what it had sent (unix_pending.cc)
//   refillQueues  every other queued message written back by the socket that sent it
//   openFiles     datagram sockets connect, options, shutdown, flags, owner
//   shareFds      (before the hand-over) bound-then-unlinked names are unlinked again,
//                 renamed socket files moved to their current path
class UnixSocketKind : public RestoreKind {
 public:
  std::string_view name() const override { return "unix socket"; }
  images::FdTypes type() const override { return images::UNIXSK; }
  RestorePhase firstPhase() const override { return RestorePhase::BIND_LISTEN; }
  Status check(const images::FileEntry& e) const override;
  Status takeOrder(proto::TaskOrder::Reader order,
                   const FileEntries& files) override;
  Status atPhase(OpenContext& ctx) override;
  Result<OpenResult> open(OpenContext& ctx, const images::FileEntry& e) override;

 private:
  struct Sock {
    const images::UnixSkEntry* e = nullptr;
    proto::UnixRole role = proto::UnixRole::PLAIN;
    uint32_t partner = 0;
    std::string connectTo;
    UniqueFd fd;
    UniqueFd tempPeer;    // halfClosed / dead: the peer that writes the queue, then goes
    bool deferListen = false;  // accepts its established connections before its backlog
    bool inFlight = false;     // only in a queued message: closed once it is written
    bool keepPath = false;     // deleted listener: stays at its path until the refill
  };
  // A connection a listener had not accepted, whose client this task connects in round
  // `round` of pendingConnect (TaskOrder.pendingConnects).
  struct PendingConnect {
    uint32_t embryo = 0;
    uint32_t round = 0;
  };
  struct Message {
    images::SkPacketEntry entry;
    uint32_t file = 0;  // its data: `length` bytes at `offset` of dataFiles_[file]
    uint64_t offset = 0;
    uint64_t length = 0;
    std::string_view data;  // in dataMaps_, once refill() mapped them
  };
  // A file of queued messages' data (TaskOrder.dataFiles), mapped read-only for refill().
  class MappedData {
   public:
    MappedData(const void* p, size_t n) : p_(p), n_(n) {}
    MappedData(MappedData&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
    MappedData& operator=(MappedData&&) = delete;
    ~MappedData();
    std::string_view view() const { return {static_cast<const char*>(p_), n_}; }

   private:
    const void* p_;
    size_t n_;
  };
  // Maps the data files the queue needs and points each message at its bytes.
  Status mapQueueData();
  // A new socket's send buffer, once, for budget_ (queued messages to write).
  void learnDefaultSendBuffer();

  Status runPhase(OpenContext& ctx);
  // pendingConnect, round `round`: this task's clients connect to their listeners, as the
  // embryo's SO_PEERCRED says, and write what they had sent (unix_pending.cc).
  Status connectPending(uint32_t round);
  // socket() and socketpair() in the network namespace the socket was dumped in (entered
  // for the call only: a socket keeps the namespace it was created in).
  Result<UniqueFd> makeSocket(const images::UnixSkEntry& e, int type);
  Status makePair(const images::UnixSkEntry& e, int type, UniqueFd& a, UniqueFd& b);
  Status inNetns(const images::UnixSkEntry& e, const std::function<Status()>& fn);
  // e is made in crpipe's own network namespace.
  bool ownNetns(const images::UnixSkEntry& e) const;
  // Runs fn inside the mount namespace of e's socket file (bind, connect, unlink by e's
  // name), then back in the restorer's own, in its own directory.
  Status atName(const images::UnixSkEntry& e, const std::function<Status()>& fn);
  // Joins namespace `ino` (CLONE_NEWNET or CLONE_NEWNS), taken from the coordinator on
  // first use, for fn only.
  Status inNamespace(int nstype, uint64_t ino, const std::map<uint64_t, int>& peers,
                     std::map<uint64_t, UniqueFd>& taken, const std::function<Status()>& fn);
  Status bindListen(OpenContext& ctx);
  Status connectClients();
  Status acceptAll();
  Status refill();
  Status finishSockets();
  Status fixNames();
  // A bound-then-unlinked socket whose path now holds something else (a FIFO made over
  // it): that is renamed aside for the bind, and back by unlinkDeleted().
  // sockets: another socket's file steps aside too (else a stale one is replaced by bind).
  Status displaceOccupant(const images::UnixSkEntry& e, bool sockets = false);
  Status putBack(size_t from);  // displaced_[from..] go back; 0: every one
  // A bound-then-unlinked socket's file moves to a path of its own (PATH.crpipe-PID-INO)
  // until unlinkDeleted(); reach() is the name its connects and sends use meanwhile.
  Status hideDeleted(const images::UnixSkEntry& e);
  std::string reach(const images::UnixSkEntry& e) const;
  Status unlinkDeleted();

  const images::UnixSkEntry* byIno(uint32_t ino) const;
  // s.fd to its home slot when that is free (placeHome), right when it is made.
  Status home(Sock& s);
  Sock* local(uint32_t id);
  // An embryo's entry: the server end of a connection its listener had not accepted.
  bool isPendingConnection(uint32_t id) const;
  Status writeMessage(const Message& m);
  // The messages of queue_ that `which` selects, in queue order, each sender's exited pid
  // held (PidHold) while its SCM_CREDENTIALS are written.
  Status writeMessages(const std::function<bool(const Message&)>& which);
  std::string where(const images::UnixSkEntry& e) const;
  // What SO_PEERCRED the clients of the connections accepted at this name (nameKey)
  // reported: the listener's credentials, which listen() sets; nullptr if none is known.
  const images::UcredEntry* clientSideCred(const std::string& key) const;

  std::map<uint32_t, Sock> socks_;                         // by file id, made here
  std::unordered_map<uint32_t, const images::UnixSkEntry*> entries_;  // every unix entry we know
  std::unordered_map<uint32_t, uint32_t> inoToId_;
  std::vector<Message> queue_;
  std::vector<int> dataFiles_;          // the coordinator's fds (TaskOrder.dataFiles)
  std::vector<MappedData> dataMaps_;    // while refill() writes the queues
  SendBudget budget_;                   // the writers' send buffers during refill()
  std::map<std::string, UniqueFd> tempListeners_;          // by name (+ dir)
  std::vector<PendingConnect> pendingConnects_;            // in accept order per listener
  std::map<uint32_t, int> embryoWriters_;  // embryo id -> its client, while connectPending writes
  int fdBase_ = 0;
  const std::map<uint32_t, int>* homes_ = nullptr;
  Log* log_ = nullptr;
  PeerCreds creds_{nullptr};
  std::map<std::string, const images::UcredEntry*> clientCreds_;  // see clientSideCred
  struct Displaced {
    const images::UnixSkEntry* e;
    std::string path;
    std::string aside;
  };
  std::vector<Displaced> displaced_;
  std::map<uint32_t, std::string> hidden_;  // file id -> raw name of its own path
  std::map<uint32_t, std::vector<std::string>> madeDirs_;  // made to bind a deleted socket
  std::map<int, images::SkOptsEntry> freshOpts_;  // by socket type: a new socket's options
  const std::map<uint32_t, UniqueFd>* made_ = nullptr;
  std::map<uint32_t, int> inherited_;  // --inherit-fd: file id -> crpipe's fd
  pid_t coordinatorPid_ = 0;  // the task's descriptions so far
  std::map<uint64_t, int> netnsPeer_;     // netns inode -> the coordinator's fd of it
  std::map<uint64_t, UniqueFd> netnsFds_;  // taken from the coordinator when first needed
  std::map<uint64_t, int> mntnsPeer_;     // the same for mount namespaces
  std::map<uint64_t, UniqueFd> mntnsFds_;
};

}  // namespace crpipe::restorer
