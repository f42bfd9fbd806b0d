#pragma once

#include <cstddef>
#include <map>
#include <set>

#include "common/result.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::restorer {

// Every option the dump recorded (protos/sk_opts.proto), set on a restored socket once its
// queue is written back: buffer sizes with SO_*BUFFORCE at half the recorded value (the
// kernel doubles what is set, and the dump recorded what getsockopt shows), timeouts,
// SO_PASSCRED/PASSSEC, priority, SO_RCVLOWAT, mark, linger, keepalive, the classic BPF
// filter, SO_BUF_LOCK last (setting a size locks it; the recorded lock bits win), then
// SO_PEEK_OFF. An option that has the value `fresh` shows (what a new socket of the same
// type has) is left alone; `sndbufKnown`: the socket's send buffer is known to be still
// `fresh`'s (never grown for the refill, made in crpipe's network namespace), so a socket
// with default options costs no syscall at all.
Status applyUnixOpts(int fd, const images::UnixSkEntry& e, const images::SkOptsEntry& fresh,
                     bool sndbufKnown = false);

// The options of a new unix socket of this type, as the dump records them.
Result<images::SkOptsEntry> freshUnixOpts(int type);

// The send buffers of the sockets that write queues back. Written messages count against
// the writer's send buffer until they are read (each with its skb's overhead); a buffer
// grows (SO_SNDBUFFORCE) only when what its socket has written so far would not fit, so a
// socket whose queue fits the default costs one getsockopt.
class SendBudget {
 public:
  // Sockets of crpipe's own network namespace start with this send buffer (a new
  // socket's: options are set after the refill), so reserve() need not ask for theirs.
  void setDefault(size_t sndbuf) { default_ = sndbuf; }
  bool hasDefault() const { return default_ != 0; }
  // Room for one more message of `bytes` on fd; `isDefault`: fd is a new socket of
  // crpipe's network namespace (its send buffer is the default one).
  Status reserve(int fd, size_t bytes, bool isDefault);
  // fd's send buffer was grown (applyUnixOpts puts the recorded size back).
  bool grew(int fd) const { return grew_.contains(fd); }
  // fd is closed (its number may be reused).
  void forget(int fd) {
    rooms_.erase(fd);
    grew_.erase(fd);
  }
  void clear() { rooms_.clear(); }

 private:
  struct Room {
    size_t sndbuf = 0;  // as getsockopt(SO_SNDBUF) shows it
    size_t used = 0;    // what was written, with a bound on each skb's overhead
  };
  std::map<int, Room> rooms_;
  std::set<int> grew_;
  size_t default_ = 0;
};

}  // namespace crpipe::restorer
