#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"

namespace crpipe::collector {

// One skb of an embryo's receive queue: for a stream socket one chunk of one write() of the
// client (the kernel splits big writes), for seqpacket one record (possibly empty).
struct EmbryoMessage {
  std::string data;
  bool hasRights = false;    // UNIXCB(skb).fp != NULL: SCM_RIGHTS files ride on this skb
  uint32_t rightsCount = 0;  // how many
  // UNIXCB(skb).pid != NULL. The kernel stamps credentials on every skb sent to a socket
  // that has no struct socket yet, so this is normally true for embryo data.
  bool hasCreds = false;
  uint32_t credPid = 0, credUid = 0, credGid = 0;  // initial pid/user namespace values
  // the skb is unix_sk(embryo)->oob_skb, the pending MSG_OOB byte's skb
  bool oob = false;
};

// A connection a listener has not accept()ed yet ("embryo") and what its client sent.
struct EmbryoQueue {
  uint32_t listenerIno = 0;
  uint32_t embryoIno = 0;    // 0: the kernel gives an embryo an inode only at accept()
  uint32_t peerIno = 0;      // the connecting (client) socket; 0 once the client closed it
  uint32_t acceptIndex = 0;  // position in the accept queue: 0 is what accept() returns first
  uint8_t shutdown = 0;      // the embryo's sk_shutdown (RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2):
                             // 3 when the client closed, so the reader will see EOF
  // Who connected: the embryo's sk_peer_pid and sk_peer_cred, which SO_PEERCRED of the
  // accepted socket will report (pid as the collector's pid namespace sees it, 0 if not
  // visible there; effective uid/gid, initial user namespace values).
  bool hasPeerCred = false;
  uint32_t peerPid = 0, peerUid = 0, peerGid = 0;
  std::vector<EmbryoMessage> messages;  // in queue order
};

// Reads, without consuming anything, every embryo of the listening unix sockets (stream or
// seqpacket) whose inodes are in `listenerInos`, with their queued data, in the network
// namespace `netnsFd` (an open /proc/PID/ns/net; -1: the caller's). Sorted by listener
// inode, then accept order; embryos without data are included. Inodes that are not
// listening unix sockets of that namespace are ignored.
//
// It walks the kernel's queues with a BPF iterator (iter/unix, Linux >= 5.17 with BTF) and
// needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN), plus CAP_SYS_ADMIN to read paged skb data
// (large writes). Without them, or on an older kernel, it returns an Error whose message
// starts with "BPF unavailable:". The caller must have the owners of the listeners frozen:
// the walk takes no kernel lock (see unix_embryo_bpf.bpf.c for why that is safe then).
Result<std::vector<EmbryoQueue>> readEmbryoQueues(const std::set<uint32_t>& listenerInos,
                                                  int netnsFd);

}  // namespace crpipe::collector
