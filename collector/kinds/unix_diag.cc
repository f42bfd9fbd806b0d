#include "collector/kinds/unix_diag.h"

#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>

namespace crpipe::collector {

namespace {

template <typename T>
T readAs(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// An attribute's payload, checked to hold at least `min` bytes.
Result<std::span<const uint8_t>> attrBytes(nlattr* tb[], int type, size_t min,
                                           const char* what) {
  int len = nla_len(tb[type]);
  if (len < 0 || static_cast<size_t>(len) < min) {
    return failMsg(std::string("sock_diag attribute ") + what + " has " +
                   std::to_string(len) + " bytes, expected at least " + std::to_string(min));
  }
  return std::span<const uint8_t>(static_cast<const uint8_t*>(nla_data(tb[type])),
                                  static_cast<size_t>(len));
}

}  // namespace

uint32_t unixDiagShowMask() {
  // UNIX_DIAG_SHUTDOWN needs no bit: the kernel always sends it.
  return UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS |
         UDIAG_SHOW_RQLEN | UDIAG_SHOW_MEMINFO | UDIAG_SHOW_UID;
}

Result<UnixDiagSocket> parseUnixDiagPayload(std::span<const uint8_t> payload) {
  if (payload.size() < sizeof(unix_diag_msg)) {
    return failMsg("sock_diag message of " + std::to_string(payload.size()) +
                   " bytes is shorter than unix_diag_msg");
  }
  auto msg = readAs<unix_diag_msg>(payload.data());
  if (msg.udiag_family != AF_UNIX) {
    return failMsg("sock_diag message of family " + std::to_string(msg.udiag_family) +
                   " in an AF_UNIX dump");
  }
  UnixDiagSocket sk;
  sk.ino = msg.udiag_ino;
  sk.type = msg.udiag_type;
  sk.state = msg.udiag_state;

  // nla_parse wants aligned, writable attributes; copy them into an aligned buffer so
  // that any byte span (a canned payload at an odd offset) parses the same way.
  size_t attrOff = NLMSG_ALIGN(sizeof(unix_diag_msg));
  size_t attrLen = payload.size() > attrOff ? payload.size() - attrOff : 0;
  // Every socket of the namespace comes through here (tens of thousands on a busy host):
  // the usual attributes fit the stack buffer, a listener's long ICONS takes the heap.
  uint64_t small[64];
  std::vector<uint64_t> large;
  uint64_t* aligned = small;
  if (attrLen > sizeof(small)) {
    large.resize((attrLen + 7) / 8);
    aligned = large.data();
  }
  if (attrLen > 0) {
    std::memcpy(aligned, payload.data() + attrOff, attrLen);
  }
  // UNIX_DIAG_NAME is attribute type 0, which libnl's nla_parse stores like any other.
  nlattr* tb[UNIX_DIAG_MAX + 1] = {};
  int err = nla_parse(tb, UNIX_DIAG_MAX, reinterpret_cast<nlattr*>(aligned),
                      static_cast<int>(attrLen), nullptr);
  if (err < 0) {
    return failMsg("sock_diag attributes of unix socket ino " + std::to_string(sk.ino) +
                   " do not parse (" + std::to_string(err) + ")");
  }
  // Only an error needs this text.
  auto ctx = [&sk]() { return "unix socket ino " + std::to_string(sk.ino); };

  if (tb[UNIX_DIAG_NAME] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_NAME, 0, "NAME");
    sk.name = std::string(reinterpret_cast<const char*>(b->data()), b->size());
  }
  if (tb[UNIX_DIAG_VFS] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_VFS, sizeof(unix_diag_vfs), "VFS");
    if (!b) {
      return fail(std::move(b).error().context(ctx()));
    }
    auto v = readAs<unix_diag_vfs>(b->data());
    sk.vfsIno = v.udiag_vfs_ino;
    sk.vfsDev = v.udiag_vfs_dev;
  }
  if (tb[UNIX_DIAG_PEER] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_PEER, sizeof(uint32_t), "PEER");
    if (!b) {
      return fail(std::move(b).error().context(ctx()));
    }
    sk.peer = readAs<uint32_t>(b->data());
  }
  if (tb[UNIX_DIAG_ICONS] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_ICONS, 0, "ICONS");
    if (b->size() % sizeof(uint32_t) != 0) {
      return failMsg(ctx() + ": sock_diag attribute ICONS has " + std::to_string(b->size()) +
                     " bytes, not a multiple of 4");
    }
    sk.icons.resize(b->size() / sizeof(uint32_t));
    std::memcpy(sk.icons.data(), b->data(), b->size());
  }
  if (tb[UNIX_DIAG_RQLEN] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_RQLEN, sizeof(unix_diag_rqlen), "RQLEN");
    if (!b) {
      return fail(std::move(b).error().context(ctx()));
    }
    auto r = readAs<unix_diag_rqlen>(b->data());
    sk.rqueue = r.udiag_rqueue;
    sk.wqueue = r.udiag_wqueue;
  }
  if (tb[UNIX_DIAG_MEMINFO] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_MEMINFO, 0, "MEMINFO");
    // Newer kernels may append fields; keep whole u32s only.
    sk.meminfo.resize(b->size() / sizeof(uint32_t));
    std::memcpy(sk.meminfo.data(), b->data(), sk.meminfo.size() * sizeof(uint32_t));
  }
  if (tb[UNIX_DIAG_SHUTDOWN] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_SHUTDOWN, sizeof(uint8_t), "SHUTDOWN");
    if (!b) {
      return fail(std::move(b).error().context(ctx()));
    }
    sk.shutdown = (*b)[0];
  }
  if (tb[UNIX_DIAG_UID] != nullptr) {
    auto b = attrBytes(tb, UNIX_DIAG_UID, sizeof(uint32_t), "UID");
    if (!b) {
      return fail(std::move(b).error().context(ctx()));
    }
    sk.uid = readAs<uint32_t>(b->data());
  }
  return sk;
}

Status parseUnixDiagBuffer(std::span<const uint8_t> bytes, std::vector<UnixDiagSocket>& out,
                           bool& done) {
  size_t off = 0;
  while (off < bytes.size()) {
    if (bytes.size() - off < sizeof(nlmsghdr)) {
      return failMsg("sock_diag answer: " + std::to_string(bytes.size() - off) +
                     " trailing bytes at offset " + std::to_string(off) +
                     " are shorter than a netlink header");
    }
    auto h = readAs<nlmsghdr>(bytes.data() + off);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > bytes.size() - off) {
      return failMsg("sock_diag answer: netlink message at offset " + std::to_string(off) +
                     " has length " + std::to_string(h.nlmsg_len) + " of " +
                     std::to_string(bytes.size() - off) + " bytes left");
    }
    auto payload = bytes.subspan(off + NLMSG_HDRLEN, h.nlmsg_len - NLMSG_HDRLEN);
    if (h.nlmsg_type == NLMSG_DONE) {
      done = true;
      return {};
    }
    if (h.nlmsg_type == NLMSG_ERROR) {
      int err = 0;
      if (payload.size() >= sizeof(nlmsgerr)) {
        err = -readAs<nlmsgerr>(payload.data()).error;
      }
      return fail(Error(err, "sock_diag answered with an error"));
    }
    if (h.nlmsg_type == SOCK_DIAG_BY_FAMILY) {
      auto sk = parseUnixDiagPayload(payload);
      if (!sk) {
        return fail(std::move(sk).error().context("sock_diag message at offset " +
                                                  std::to_string(off)));
      }
      out.push_back(std::move(*sk));
    }
    off += NLMSG_ALIGN(h.nlmsg_len);
  }
  return {};
}

uint32_t UnixDiagTable::addNamespace(uint64_t netnsIno, std::vector<UnixDiagSocket> sockets) {
  auto [it, added] = nsIds_.emplace(netnsIno, static_cast<uint32_t>(nsIds_.size() + 1));
  if (!added) {
    return it->second;
  }
  byIno_.reserve(byIno_.size() + sockets.size());
  for (auto& sk : sockets) {
    if (sk.state == TCP_LISTEN) {
      for (uint32_t client : sk.icons) {
        if (client != 0) {
          listenerByClient_[client] = sk.ino;
        }
      }
    }
    uint32_t ino = sk.ino;
    byIno_[ino] = Known{std::move(sk), netnsIno, it->second};
  }
  return it->second;
}

const UnixDiagTable::Known* UnixDiagTable::find(uint32_t ino) const {
  auto it = byIno_.find(ino);
  return it == byIno_.end() ? nullptr : &it->second;
}

std::optional<uint32_t> UnixDiagTable::listenerOfClient(uint32_t clientIno) const {
  auto it = listenerByClient_.find(clientIno);
  if (it == listenerByClient_.end()) {
    return std::nullopt;
  }
  return it->second;
}

}  // namespace crpipe::collector
