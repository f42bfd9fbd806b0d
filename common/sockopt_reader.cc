#include "common/sockopt_reader.h"

#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace crpipe {

namespace {

// <linux/io_uring.h> of Linux 6.7 (enum io_uring_socket_op); liburing 2.3 predates it.
constexpr uint32_t kSocketUringOpGetsockopt = 2;
// Options per submission: more than a unix socket reads.
constexpr unsigned kRingEntries = 64;

// One SQE asking getsockopt(fd, SOL_SOCKET, o.name) into o.val. The kernel's layout for
// socket commands: level and optname share the `addr` field (low and high 32 bits),
// optlen is in `file_index`, optval in `addr3`.
void prepGetsockopt(io_uring_sqe* sqe, int fd, const SockoptReader::Opt& o, uint64_t tag) {
  std::memset(static_cast<void*>(sqe), 0, sizeof(*sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = fd;
  sqe->cmd_op = kSocketUringOpGetsockopt;
  sqe->addr = static_cast<uint64_t>(SOL_SOCKET) | static_cast<uint64_t>(o.name) << 32;
  sqe->file_index = o.len;
  sqe->addr3 = reinterpret_cast<uint64_t>(o.val);
  sqe->user_data = tag;
}

void readOne(int fd, SockoptReader::Opt& o) {
  socklen_t len = o.len;
  if (::getsockopt(fd, SOL_SOCKET, o.name, o.val, &len) != 0) {
    o.err = errno;
    return;
  }
  o.len = len;
  o.err = 0;
}

}  // namespace

struct SockoptReader::Ring {
  io_uring ring{};
  bool ready = false;
  ~Ring() {
    if (ready) {
      io_uring_queue_exit(&ring);
    }
  }

  // All of `opts` in submissions of at most kRingEntries; false if the ring failed as a
  // whole. Then every request submitted has been reaped (none is left to write into
  // memory later), and the caller stops using the ring and reads with syscalls.
  bool read(int fd, std::span<Opt> opts) {
    for (size_t base = 0; base < opts.size(); base += kRingEntries) {
      size_t n = std::min<size_t>(kRingEntries, opts.size() - base);
      size_t queued = 0;
      for (; queued < n; ++queued) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        if (sqe == nullptr) {
          break;
        }
        prepGetsockopt(sqe, fd, opts[base + queued], base + queued);
      }
      int r = io_uring_submit(&ring);
      size_t submitted = r > 0 ? static_cast<size_t>(r) : 0;
      size_t seen = 0;
      bool ok = queued == n && submitted == n;
      while (seen < submitted) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring, &cqe) != 0) {
          return false;  // the ring is broken: the caller drops it (its memory goes with it)
        }
        uint64_t i = cqe->user_data;
        if (i < opts.size()) {
          Opt& o = opts[i];
          // On success the result is the option's length, as getsockopt leaves it in optlen.
          if (cqe->res < 0) {
            o.err = -cqe->res;
          } else {
            o.err = 0;
            o.len = static_cast<socklen_t>(cqe->res);
          }
        } else {
          ok = false;
        }
        io_uring_cqe_seen(&ring, cqe);
        ++seen;
      }
      if (!ok) {
        return false;  // what was queued but not submitted dies with the ring
      }
    }
    return true;
  }
};

SockoptReader::SockoptReader(bool useRing) {
  if (!useRing) {
    return;
  }
  auto ring = std::make_unique<Ring>();
  if (io_uring_queue_init(kRingEntries, &ring->ring, 0) != 0) {
    return;  // no io_uring here: syscalls
  }
  ring->ready = true;
  // A kernel without socket commands answers EOPNOTSUPP (before 6.7) or EINVAL (no
  // IORING_OP_URING_CMD): ask one option of a socket of our own both ways.
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return;
  }
  UniqueFd a(sv[0]), b(sv[1]);
  int want = 0, got = -1;
  socklen_t wantLen = sizeof(want);
  if (::getsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &want, &wantLen) != 0) {
    return;
  }
  Opt probe{SO_SNDBUF, &got, sizeof(got)};
  if (!ring->read(a.get(), std::span<Opt>(&probe, 1)) || probe.err != 0 || got != want) {
    return;
  }
  ring_ = std::move(ring);
}

SockoptReader::~SockoptReader() = default;

void SockoptReader::read(int fd, std::span<Opt> opts) {
  if (ring_ != nullptr) {
    // The lengths given, for syscalls if the ring fails halfway (a completed request
    // already replaced its length with the answer's).
    socklen_t given[kRingEntries];
    bool small = opts.size() <= kRingEntries;
    for (size_t i = 0; small && i < opts.size(); ++i) {
      given[i] = opts[i].len;
    }
    if (small && ring_->read(fd, opts)) {
      return;
    }
    if (!small) {
      // Not one submission: plain syscalls, rather than keep every length.
      for (Opt& o : opts) {
        readOne(fd, o);
      }
      return;
    }
    ring_.reset();  // a ring that failed once is not trusted again
    for (size_t i = 0; i < opts.size(); ++i) {
      opts[i].len = given[i];
    }
  }
  for (Opt& o : opts) {
    readOne(fd, o);
  }
}

}  // namespace crpipe
