#pragma once

#include <optional>

#include "common/result.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::collector {

// What getsockopt says about a unix socket, read through the collector's duplicate.
struct UnixSockOpts {
  images::SkOptsEntry opts;
  int type = 0;     // SO_TYPE
  int peekOff = -1;  // SO_PEEK_OFF; -1 when peeking with an offset is off
  std::optional<images::UcredEntry> peercred;  // SO_PEERCRED, when the socket has a peer
};

// Reads every option crpipe records (CRIU's sk_opts_entry plus SO_PEEK_OFF and
// SO_PEERCRED). Changes nothing.
Result<UnixSockOpts> readUnixSockOpts(int fd);

}  // namespace crpipe::collector
