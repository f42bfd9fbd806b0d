#pragma once

#include <optional>

#include "common/sockopt_reader.h"
#include "common/result.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::collector {

// What getsockopt says about a unix socket, read through the collector's duplicate.
struct UnixSockOpts {
  images::SkOptsEntry opts;
  int peekOff = -1;  // SO_PEEK_OFF; -1 when peeking with an offset is off
  std::optional<images::UcredEntry> peercred;  // SO_PEERCRED, when the socket has a peer
};

// Values sock_diag already gave for the socket (UNIX_DIAG_MEMINFO holds sk_sndbuf and
// sk_rcvbuf, the very fields getsockopt(SO_SNDBUF/SO_RCVBUF) reads; the tree is frozen, so
// they cannot have changed since). A value given here is not asked for again.
struct KnownUnixSockOpts {
  std::optional<uint32_t> sndbuf;
  std::optional<uint32_t> rcvbuf;
};

// Reads every option crpipe records (CRIU's sk_opts_entry plus SO_PEEK_OFF and
// SO_PEERCRED), all at once through `reader` (io_uring where it can). Changes nothing.
// `domain`: also SO_DOMAIN, in the same submission (-1 if it could not be read; it is set
// also when the result is an error).
Result<UnixSockOpts> readUnixSockOpts(int fd, SockoptReader& reader,
                                      const KnownUnixSockOpts& known = {},
                                      int* domain = nullptr);
// The same with getsockopt syscalls.
Result<UnixSockOpts> readUnixSockOpts(int fd, const KnownUnixSockOpts& known = {});

}  // namespace crpipe::collector
