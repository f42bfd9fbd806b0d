#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/unix_name.h"

namespace crpipe::collector {

// One AF_UNIX socket as NETLINK_SOCK_DIAG describes it (one unix_diag_msg and its
// attributes). Optional members are absent when the kernel sent no attribute for them.
struct UnixDiagSocket {
  uint32_t ino = 0;
  uint8_t type = 0;   // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  uint8_t state = 0;  // TCP_LISTEN, TCP_ESTABLISHED, TCP_CLOSE
  // UNIX_DIAG_NAME: the sun_path bytes exactly (abstract names start with '\0' and may
  // hold more NULs); absent for an unbound socket.
  std::optional<std::string> name;
  // UNIX_DIAG_VFS: the socket file of a socket bound to a path.
  std::optional<uint32_t> vfsIno;
  std::optional<uint32_t> vfsDev;
  // UNIX_DIAG_PEER: 0 when there is none, and also when the peer has no inode (an
  // embryo a listener has not accepted yet, or a peer that was closed).
  uint32_t peer = 0;
  // UNIX_DIAG_ICONS (listeners): the peer inode of each queued connection, 0 for a
  // client that already closed.
  std::vector<uint32_t> icons;
  // UNIX_DIAG_RQLEN. Listeners: rqueue = queued connections, wqueue = max backlog.
  // Others: rqueue = bytes queued (dgram: only the first datagram), wqueue = bytes in
  // flight that this socket sent.
  std::optional<uint32_t> rqueue;
  std::optional<uint32_t> wqueue;
  std::vector<uint32_t> meminfo;    // UNIX_DIAG_MEMINFO (SK_MEMINFO_*)
  std::optional<uint8_t> shutdown;  // UNIX_DIAG_SHUTDOWN (RCV_SHUTDOWN | SEND_SHUTDOWN)
  std::optional<uint32_t> uid;      // UNIX_DIAG_UID
};

// The udiag_show bits crpipe asks for.
uint32_t unixDiagShowMask();

// Parses a buffer of netlink messages as the kernel answers a SOCK_DIAG_BY_FAMILY dump
// (several nlmsghdr, possibly NLMSG_DONE or NLMSG_ERROR). Pure: canned payloads in the
// unit tests go through the same code as the kernel's answers. `done` is set when an
// NLMSG_DONE was seen.
Status parseUnixDiagBuffer(std::span<const uint8_t> bytes, std::vector<UnixDiagSocket>& out,
                           bool& done);

// Parses the payload of one SOCK_DIAG_BY_FAMILY message (unix_diag_msg + attributes).
Result<UnixDiagSocket> parseUnixDiagPayload(std::span<const uint8_t> payload);

// One sock_diag dump of every AF_UNIX socket of a network namespace. netnsFd < 0 means the
// collector's own namespace; otherwise the netlink socket is created inside the namespace
// the fd refers to (a socket stays in the namespace it was created in).
Result<std::vector<UnixDiagSocket>> dumpUnixDiag(int netnsFd);

// The sockets of every network namespace of the dump, by inode (socket inodes come from
// one filesystem, sockfs, so they are unique across namespaces).
class UnixDiagTable {
 public:
  struct Known {
    UnixDiagSocket sk;
    uint64_t netnsIno = 0;
    uint32_t nsId = 0;  // crpipe's small id of the namespace (1, 2, ...)
  };

  // Adds one namespace's dump; returns its ns id. A namespace added twice is ignored.
  uint32_t addNamespace(uint64_t netnsIno, std::vector<UnixDiagSocket> sockets);
  bool hasNamespace(uint64_t netnsIno) const { return nsIds_.count(netnsIno) != 0; }

  const Known* find(uint32_t ino) const;
  // The listener whose queue holds a not-yet-accepted connection from `clientIno`.
  std::optional<uint32_t> listenerOfClient(uint32_t clientIno) const;
  size_t size() const { return byIno_.size(); }

 private:
  std::unordered_map<uint32_t, Known> byIno_;
  std::unordered_map<uint32_t, uint32_t> listenerByClient_;
  std::unordered_map<uint64_t, uint32_t> nsIds_;
};


}  // namespace crpipe::collector
