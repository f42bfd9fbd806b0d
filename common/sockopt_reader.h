#pragma once

#include <sys/socket.h>

#include <memory>
#include <span>

namespace crpipe {

// Many getsockopt(SOL_SOCKET, ...) of one socket at once. Where the kernel takes socket
// commands through io_uring (IORING_OP_URING_CMD with SOCKET_URING_OP_GETSOCKOPT, Linux
// 6.7+), the options of a socket go in one submission: ~255 ns an option against ~365 ns
// for a getsockopt syscall on the 2-core test machine (a unix socket's 22 options: ~2.5 us
// saved). Where io_uring is missing, disabled (kernel.io_uring_disabled, a seccomp filter)
// or does not know the command, the same options are read with getsockopt one by one; the
// results are the same either way. One reader per thread: it owns a ring.
class SockoptReader {
 public:
  struct Opt {
    int name = 0;         // SO_*
    void* val = nullptr;  // room for the value (may be null with len 0: SO_GET_FILTER's count)
    socklen_t len = 0;    // in: the room; out: what the kernel wrote (or reported)
    int err = 0;          // 0, or the errno of this option alone
  };

  // `useRing` false: syscalls only (tests compare both ways).
  explicit SockoptReader(bool useRing = true);
  ~SockoptReader();
  SockoptReader(const SockoptReader&) = delete;
  SockoptReader& operator=(const SockoptReader&) = delete;

  // Reads every option of `opts` from socket `fd`.
  void read(int fd, std::span<Opt> opts);
  // Whether options go through io_uring (decided at construction).
  bool batched() const { return ring_ != nullptr; }

 private:
  struct Ring;
  std::unique_ptr<Ring> ring_;
};

}  // namespace crpipe
