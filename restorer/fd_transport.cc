#include "restorer/fd_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <deque>

namespace crpipe::restorer {

namespace {

// Below SCM_MAX_FD (253) so one message always fits.
constexpr size_t kFdsPerMessage = 250;

Result<sockaddr_un> transportAddress(const std::string& token, pid_t pid, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string name = "crpipe-restore-" + token + "-" + std::to_string(pid);
  if (name.size() + 1 > sizeof(a.sun_path)) {
    return failMsg("transport name too long: " + name);
  }
  // Abstract: a leading NUL, nothing on disk, gone with the socket.
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}

struct Batch {
  std::vector<uint32_t> ids;
  std::vector<int> fds;
};

struct Peer {
  pid_t pid;
  UniqueFd sock;
  std::deque<Batch> batches;
};

// One message: the file ids as payload, their fds as SCM_RIGHTS in the same order.
// Returns false when the peer's queue is full (EAGAIN).
Result<bool> trySend(Peer& p) {
  const Batch& b = p.batches.front();
  iovec iov{const_cast<uint32_t*>(b.ids.data()), b.ids.size() * sizeof(uint32_t)};
  std::vector<char> ctl(CMSG_SPACE(b.fds.size() * sizeof(int)), 0);
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl.data();
  mh.msg_controllen = ctl.size();
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(b.fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), b.fds.data(), b.fds.size() * sizeof(int));
  if (::sendmsg(p.sock.get(), &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
    if (errno == EAGAIN) {
      return false;
    }
    return failSys("send fds to pid " + std::to_string(p.pid));
  }
  p.batches.pop_front();
  return true;
}

// Takes every message waiting on the transport. Returns how many it took.
Result<size_t> drain(int transport, const std::map<uint32_t, pid_t>& expected, int fdBase,
                     std::map<uint32_t, UniqueFd>& received) {
  size_t taken = 0;
  for (;;) {
    uint32_t ids[kFdsPerMessage + 1];
    iovec iov{ids, sizeof(ids)};
    alignas(cmsghdr) char ctl[CMSG_SPACE(kFdsPerMessage * sizeof(int)) + CMSG_SPACE(sizeof(ucred))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof(ctl);
    ssize_t n = ::recvmsg(transport, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EAGAIN) {
        return taken;
      }
      return failSys("receive fds");
    }
    // Own every fd first, whatever else is wrong with the message.
    std::vector<UniqueFd> fds;
    const ucred* cred = nullptr;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds.emplace_back(fd);
        }
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        cred = reinterpret_cast<const ucred*>(CMSG_DATA(c));
      }
    }
    if ((mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0) {
      return failMsg("a fd transfer message was truncated");
    }
    size_t count = static_cast<size_t>(n) / sizeof(uint32_t);
    if (count != fds.size()) {
      return failMsg("a fd transfer message names " + std::to_string(count) +
                     " files but carries " + std::to_string(fds.size()) + " fds");
    }
    for (size_t i = 0; i < count; ++i) {
      auto it = expected.find(ids[i]);
      if (it == expected.end() || received.contains(ids[i])) {
        return failMsg("received file id " + std::to_string(ids[i]) + " that was not expected");
      }
      if (cred == nullptr || cred->pid != it->second) {
        return failMsg("file id " + std::to_string(ids[i]) + " came from pid " +
                       std::to_string(cred != nullptr ? cred->pid : 0) + ", not from pid " +
                       std::to_string(it->second));
      }
      UniqueFd fd = std::move(fds[i]);
      if (fd.get() < fdBase) {
        UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, fdBase));
        if (!moved.valid()) {
          return failSys("F_DUPFD_CLOEXEC");
        }
        fd = std::move(moved);
      }
      received.emplace(ids[i], std::move(fd));
    }
    ++taken;
  }
}

}  // namespace

Result<UniqueFd> openTransport(const std::string& token, pid_t pid) {
  socklen_t len = 0;
  auto addr = transportAddress(token, pid, &len);
  if (!addr) {
    return fail(std::move(addr).error());
  }
  UniqueFd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) {
    return failSys("fd transport socket");
  }
  if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&*addr), len) < 0) {
    return failSys("bind fd transport socket");
  }
  int one = 1;
  if (::setsockopt(s.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
    return failSys("SO_PASSCRED on the fd transport socket");
  }
  return s;
}

Status exchangeFds(int transport, const std::string& token,
                   const std::map<pid_t, std::vector<Outgoing>>& sends,
                   const std::map<uint32_t, pid_t>& expected, int fdBase,
                   std::map<uint32_t, UniqueFd>& received) {
  std::vector<Peer> peers;
  for (const auto& [pid, out] : sends) {
    Peer p{pid, UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)), {}};
    if (!p.sock.valid()) {
      return failSys("socket");
    }
    socklen_t len = 0;
    auto addr = transportAddress(token, pid, &len);
    if (!addr) {
      return fail(std::move(addr).error());
    }
    // Connected, so that poll() says when the peer's queue has room again.
    if (::connect(p.sock.get(), reinterpret_cast<const sockaddr*>(&*addr), len) < 0) {
      return failSys("connect to the fd transport of pid " + std::to_string(pid));
    }
    for (size_t i = 0; i < out.size(); i += kFdsPerMessage) {
      Batch b;
      for (size_t j = i; j < out.size() && j < i + kFdsPerMessage; ++j) {
        b.ids.push_back(out[j].fileId);
        b.fds.push_back(out[j].fd);
      }
      p.batches.push_back(std::move(b));
    }
    peers.push_back(std::move(p));
  }
  for (;;) {
    bool progress = false;
    bool sending = false;
    for (auto& p : peers) {
      while (!p.batches.empty()) {
        auto sent = trySend(p);
        if (!sent) {
          return fail(std::move(sent).error());
        }
        if (!*sent) {
          break;
        }
        progress = true;
      }
      sending = sending || !p.batches.empty();
    }
    if (received.size() < expected.size()) {
      auto n = drain(transport, expected, fdBase, received);
      if (!n) {
        return fail(std::move(n).error());
      }
      progress = progress || *n > 0;
    }
    const bool receiving = received.size() < expected.size();
    if (!sending && !receiving) {
      return {};
    }
    if (progress) {
      continue;
    }
    // Nothing moved: wait until our socket has a message or a full peer has room.
    std::vector<pollfd> pfds;
    if (receiving) {
      pfds.push_back({transport, POLLIN, 0});
    }
    for (auto& p : peers) {
      if (!p.batches.empty()) {
        pfds.push_back({p.sock.get(), POLLOUT, 0});
      }
    }
    if (::poll(pfds.data(), pfds.size(), -1) < 0 && errno != EINTR) {
      return failSys("poll fd transport");
    }
  }
}

}  // namespace crpipe::restorer
