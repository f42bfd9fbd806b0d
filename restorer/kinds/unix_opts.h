#pragma once

#include "common/result.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::restorer {

// Every option the dump recorded (protos/sk_opts.proto), set on a restored socket once its
// queue is written back: buffer sizes with SO_*BUFFORCE at half the recorded value (the
// kernel doubles what is set, and the dump recorded what getsockopt shows), timeouts,
// SO_PASSCRED/PASSSEC, priority, SO_RCVLOWAT, mark, linger, keepalive, the classic BPF
// filter, SO_BUF_LOCK last (setting a size locks it; the recorded lock bits win), then
// SO_PEEK_OFF. An option that has the value `fresh` shows (what a new socket of the same
// type has) is left alone, so a socket with default options costs one getsockopt.
Status applyUnixOpts(int fd, const images::UnixSkEntry& e, const images::SkOptsEntry& fresh);

// The options of a new unix socket of this type, as the dump records them.
Result<images::SkOptsEntry> freshUnixOpts(int type);

// A send buffer large enough to write `bytes` of queued data back without blocking.
Status growSendBuffer(int fd, size_t bytes);

}  // namespace crpipe::restorer
