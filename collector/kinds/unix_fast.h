#pragma once

#include <optional>
#include <vector>

#include "collector/fast/fast_records.h"
#include "collector/kinds/unix_queue.h"
#include "collector/kinds/unix_sockopts.h"

namespace crpipe::collector {

// The unix socket kind's use of the BPF fast path (collector/fast/): the same values the
// syscall path reads, rebuilt from the iterator's records, or nothing where the records
// cannot answer exactly (then the caller reads with syscalls).

// What readUnixSockOpts() would return. Nothing for a socket with a classic BPF filter or a
// bound device (their contents need getsockopt), or timeouts/linger when CONFIG_HZ is
// unknown.
std::optional<UnixSockOpts> unixSockOptsFromFast(const FastUnix& u);
// The same from the options part of a USK record alone (the fd-table iterator's).
std::optional<UnixSockOpts> unixSockOptsFromUsk(const crp_fast_usk& r);

// What peekUnixQueue() would return, for a queue the iterator read whole (u.queueRead):
// stream skbs glued into runs as a peek glues them (same sender credentials, never across
// a change), datagrams and records one message each, a zero-length one after the head
// left out once someone peeked it (as a peek at an offset skips it).
std::vector<PeekedMessage> unixQueueFromFast(const FastUnix& u, int type);

}  // namespace crpipe::collector
