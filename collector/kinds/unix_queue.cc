#include "collector/kinds/unix_queue.h"

#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <algorithm>

namespace crpipe::collector {

namespace {

#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

constexpr size_t kInitialBuffer = 64 * 1024;
constexpr size_t kMaxOneRead = 4 * 1024 * 1024;
// Room for the files of one message (the kernel passes at most SCM_MAX_FD = 253) and its
// credentials.
constexpr size_t kControlSize = CMSG_SPACE(253 * sizeof(int)) + CMSG_SPACE(sizeof(ucred)) +
                                CMSG_SPACE(sizeof(int)) + 256;

Status setPeekOff(int fd, int off) {
  if (::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) != 0) {
    return fail(Error::sys("setsockopt(SO_PEEK_OFF, " + std::to_string(off) + ")"));
  }
  return {};
}

Status setPassCred(int fd, bool on) {
  int v = on ? 1 : 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &v, sizeof(v)) != 0) {
    return fail(Error::sys("setsockopt(SO_PASSCRED)"));
  }
  return {};
}

// Puts the user's SO_PEEK_OFF (if the peek changed it) and SO_PASSCRED back. restore()
// reports a failure; the destructor is the best effort on an error path that already has
// an error to return.
class PeekStateGuard {
 public:
  PeekStateGuard(int fd, int peekOff, bool passCred)
      : fd_(fd), peekOff_(peekOff), passCred_(passCred) {}
  PeekStateGuard(const PeekStateGuard&) = delete;
  PeekStateGuard& operator=(const PeekStateGuard&) = delete;
  ~PeekStateGuard() {
    if (armed_) {
      (void)restore();
    }
  }
  // Sets SO_PEEK_OFF for the walk; restore() puts the user's value back.
  Status setPeekOff(int off) {
    peekOffChanged_ = true;
    return crpipe::collector::setPeekOff(fd_, off);
  }
  Status restore() {
    armed_ = false;
    if (peekOffChanged_) {
      CRPIPE_TRY(crpipe::collector::setPeekOff(fd_, peekOff_));
    }
    if (!passCred_) {
      CRPIPE_TRY(setPassCred(fd_, false));
    }
    return {};
  }

 private:
  int fd_;
  int peekOff_;
  bool passCred_;
  bool peekOffChanged_ = false;
  bool armed_ = true;
};

struct PeekResult {
  bool empty = false;   // EAGAIN: nothing (more) queued
  bool eof = false;     // 0 bytes and no credentials: end of a shut-down stream/seqpacket
  size_t len = 0;       // the message's full length (MSG_TRUNC makes dgram report it)
  bool truncated = false;
  PeekedMessage msg;
};

// One recvmsg(MSG_PEEK) of at most `size` bytes at the socket's current peek offset.
// Every received fd is owned at once; MSG_CTRUNC (files lost for lack of room) is an
// error because the dump would be wrong.
Result<PeekResult> peekOnce(int fd, int type, std::vector<char>& buf, size_t size) {
  if (buf.size() < size) {
    buf.resize(size);
  }
  alignas(cmsghdr) char control[kControlSize];
  sockaddr_un addr{};
  iovec iov{buf.data(), size};
  msghdr mh{};
  mh.msg_name = &addr;
  mh.msg_namelen = sizeof(addr);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  int flags = MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC;
  if (type != SOCK_STREAM) {
    flags |= MSG_TRUNC;  // report a datagram's whole length even if the buffer is short
  }
  ssize_t n = ::recvmsg(fd, &mh, flags);
  int err = errno;
  PeekResult r;
  if (n < 0) {
    if (err == EAGAIN) {
      r.empty = true;
      return r;
    }
    return fail(Error::sys(err, "recvmsg(MSG_PEEK)"));
  }
  bool haveCmsg = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET) {
      continue;
    }
    size_t dataLen = c->cmsg_len - CMSG_LEN(0);
    if (c->cmsg_type == SCM_RIGHTS || c->cmsg_type == SCM_PIDFD) {
      size_t count = dataLen / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int rfd;
        std::memcpy(&rfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        UniqueFd owned(rfd);
        if (c->cmsg_type == SCM_RIGHTS) {
          r.msg.rights.push_back(std::move(owned));
        }
      }
    } else if (c->cmsg_type == SCM_CREDENTIALS && dataLen >= sizeof(ucred)) {
      ucred u;
      std::memcpy(&u, CMSG_DATA(c), sizeof(u));
      r.msg.creds = u;
      haveCmsg = true;
    }
  }
  if ((mh.msg_flags & MSG_CTRUNC) != 0) {
    return failMsg("recvmsg(MSG_PEEK): control data truncated (MSG_CTRUNC), files lost");
  }
  // SO_PASSCRED is on during the peek, so every real message comes with credentials; a
  // shut-down seqpacket (or stream) at its end returns 0 bytes without them.
  if (n == 0 && !haveCmsg) {
    r.eof = true;
    return r;
  }
  if (type == SOCK_STREAM && n == 0) {
    r.eof = true;  // a stream has no zero-length messages: this is its end
    return r;
  }
  r.len = static_cast<size_t>(n);
  r.truncated = (mh.msg_flags & MSG_TRUNC) != 0 || r.len > size;
  if (!r.truncated) {
    r.msg.data.assign(buf.data(), r.len);
  }
  if (type == SOCK_DGRAM && mh.msg_namelen > offsetof(sockaddr_un, sun_path)) {
    r.msg.addr = std::string(addr.sun_path, mh.msg_namelen - offsetof(sockaddr_un, sun_path));
  }
  return r;
}

bool sameCreds(const std::optional<ucred>& a, const std::optional<ucred>& b) {
  if (a.has_value() != b.has_value()) {
    return false;
  }
  return !a || (a->pid == b->pid && a->uid == b->uid && a->gid == b->gid);
}

// Datagrams and seqpacket records. The head is peeked with the offset off: a zero-length
// message that someone peeked before is marked "peeked" by the kernel and skipped by every
// later peek *at an offset*, but a peek without offset always returns the head. Then the
// rest is walked with SO_PEEK_OFF, which for these types counts the bytes of the messages
// before (a zero-length message is returned once, then skipped because we peeked it).
Status peekRecords(int fd, int type, int userPeekOff, PeekStateGuard& state,
                   std::vector<char>& buf, std::vector<PeekedMessage>& out) {
  if (userPeekOff != -1) {
    CRPIPE_TRY(state.setPeekOff(-1));
  }
  size_t size = std::max(buf.size(), kInitialBuffer);
  size_t off = 0;
  bool head = true;
  for (;;) {
    auto r = peekOnce(fd, type, buf, size);
    if (!r) {
      return fail(std::move(r).error());
    }
    if (r->empty || r->eof) {
      return {};
    }
    if (r->truncated) {
      // The kernel advanced the offset by what it copied: grow and read it again.
      size = r->len;
      if (!head) {
        CRPIPE_TRY(state.setPeekOff(static_cast<int>(off)));
      }
      continue;
    }
    off += r->len;
    out.push_back(std::move(r->msg));
    if (head) {
      head = false;
      CRPIPE_TRY(state.setPeekOff(static_cast<int>(off)));
    }
  }
}

Status peekStream(int fd, int userPeekOff, std::optional<uint32_t> queued,
                  PeekStateGuard& state, std::vector<char>& buf,
                  std::vector<PeekedMessage>& out) {
  size_t size = std::max(buf.size(), kInitialBuffer);
  if (queued) {
    // Room for the whole queue in one read, within reason (the walk handles the rest).
    size = std::max<size_t>(size, std::min<size_t>(*queued, kMaxOneRead));
  }
  bool prevFull = false;  // the last read stopped only because the buffer was full
  // Where the user has no peek offset, a peek without one starts at the head just as one
  // at offset 0 does. When that first peek returns every byte sock_diag counted in the
  // queue (one sender, no files: the common case), the queue is read, and SO_PEEK_OFF is
  // neither set nor put back. Otherwise the walk goes on from there with the offset.
  bool offsetSet = false;
  if (userPeekOff != -1 || !queued) {
    CRPIPE_TRY(state.setPeekOff(0));
    offsetSet = true;
  }
  size_t total = 0;
  for (;;) {
    auto r = peekOnce(fd, SOCK_STREAM, buf, size);
    if (!r) {
      return fail(std::move(r).error());
    }
    if (r->empty || r->eof) {
      return {};
    }
    size_t n = r->len;
    total += n;
    PeekedMessage msg = std::move(r->msg);
    // A stream peek glues the bytes of several sends and stops after the first send that
    // carries files. Where that send began cannot be found by peeking: on this kernel
    // (6.18) a peek of even the first byte of the run already returns the files. So the
    // files go with the whole run, as CRIU records them; a reader that reads the run in
    // small pieces after restore gets them with its first piece instead of its last.
    // Bytes of one sender without files that a full buffer cut in two are glued back.
    auto push = [&out, &prevFull](PeekedMessage piece) {
      if (prevFull && piece.rights.empty() && !out.empty() && out.back().rights.empty() &&
          sameCreds(out.back().creds, piece.creds)) {
        out.back().data += piece.data;
      } else {
        out.push_back(std::move(piece));
      }
    };
    bool full = msg.rights.empty() && n == size;
    push(std::move(msg));
    prevFull = full;
    if (!offsetSet) {
      if (queued && total == *queued && !full) {
        return {};
      }
      CRPIPE_TRY(state.setPeekOff(static_cast<int>(total)));
      offsetSet = true;
    }
  }
}

}  // namespace

Result<std::optional<std::vector<PeekedMessage>>> peekPlainStream(int fd, uint32_t queued,
                                                                  const ucred& from,
                                                                  std::vector<char>& scratch) {
  // One byte more than counted: a queue that grew since (a sender outside the tree) shows.
  auto r = peekOnce(fd, SOCK_STREAM, scratch, static_cast<size_t>(queued) + 1);
  if (!r) {
    return fail(std::move(r).error());
  }
  if (r->empty || r->eof || r->len != queued || !r->msg.rights.empty()) {
    return std::optional<std::vector<PeekedMessage>>();
  }
  // The credentials a peek with SO_PASSCRED on would have reported with these bytes.
  r->msg.creds = from;
  std::vector<PeekedMessage> out;
  out.push_back(std::move(r->msg));
  return std::optional<std::vector<PeekedMessage>>(std::move(out));
}

Result<std::vector<PeekedMessage>> peekUnixQueue(int fd, int type, int userPeekOff,
                                                 bool userPassCred, std::optional<uint32_t> queued,
                                                 std::vector<char>& scratch) {
  PeekStateGuard guard(fd, userPeekOff, userPassCred);
  // Credentials are on during the peek: they tell a zero-length record from the end of a
  // shut-down seqpacket queue, and they keep stream peeks from gluing different senders.
  if (!userPassCred) {
    CRPIPE_TRY(setPassCred(fd, true));
  }
  std::vector<PeekedMessage> out;
  if (type == SOCK_STREAM) {
    CRPIPE_TRY(peekStream(fd, userPeekOff, queued, guard, scratch, out));
  } else {
    CRPIPE_TRY(peekRecords(fd, type, userPeekOff, guard, scratch, out));
  }
  CRPIPE_TRY(guard.restore());
  return out;
}

}  // namespace crpipe::collector
