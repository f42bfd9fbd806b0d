#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

// One message of a unix socket's receive queue, as a peek returned it.
struct PeekedMessage {
  std::string data;
  std::vector<UniqueFd> rights;     // SCM_RIGHTS: the collector's own copies, in order
  std::optional<ucred> creds;       // the sender's credentials the kernel keeps per message
  std::optional<std::string> addr;  // dgram: the sender's sun_path bytes, if it was bound
};

// Reads the whole receive queue of a (non-listening) unix socket with MSG_PEEK and
// SO_PEEK_OFF, consuming nothing. Message boundaries are kept: one entry per datagram or
// seqpacket record (zero-length ones included); for a stream, one entry per run of bytes
// with the same sender, cut after the byte that carries files so that the files stay
// attached where they were. The user's SO_PEEK_OFF and SO_PASSCRED are put back before
// returning, also on error. `queued` is what sock_diag counts in a stream's queue
// (UNIX_DIAG_RQLEN), when known: a queue read whole by one peek needs no SO_PEEK_OFF walk.
// `scratch` is a reusable buffer.
Result<std::vector<PeekedMessage>> peekUnixQueue(int fd, int type, int userPeekOff,
                                                 bool userPassCred, std::optional<uint32_t> queued,
                                                 std::vector<char>& scratch);

// A stream queue a BPF iterator found plain: `queued` bytes, every skb from one sender
// (`from`, as SO_PASSCRED would report it to the collector) and none carrying files. A
// peek glues such skbs into one run, as peekUnixQueue would with SO_PASSCRED on, so one
// recvmsg at the head reads it whole without turning SO_PASSCRED on and off. The user's
// SO_PEEK_OFF must be off (-1). Nothing, and no error, when the peek finds other than
// `queued` bytes without files: then the caller peeks the usual way.
Result<std::optional<std::vector<PeekedMessage>>> peekPlainStream(int fd, uint32_t queued,
                                                                  const ucred& from,
                                                                  std::vector<char>& scratch);

}  // namespace crpipe::collector
