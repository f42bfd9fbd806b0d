#pragma once

#include "common/result.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::restorer {

// Every option the dump recorded (protos/sk_opts.proto), set on a restored socket once its
// queue is written back: buffer sizes with SO_*BUFFORCE at half the recorded value (the
// kernel doubles what is set, and the dump recorded what getsockopt shows), timeouts,
// SO_PASSCRED/PASSSEC, priority, SO_RCVLOWAT, mark, linger, keepalive, the classic BPF
// filter, SO_BUF_LOCK last (setting a size locks it; the recorded lock bits win), then
// SO_PEEK_OFF.
Status applyUnixOpts(int fd, const images::UnixSkEntry& e);

// A send buffer large enough to write `bytes` of queued data back without blocking.
Status growSendBuffer(int fd, size_t bytes);

}  // namespace crpipe::restorer
