// The sock_diag parser on canned kernel answers, built by hand: nlmsghdr, unix_diag_msg
// and the attributes the kernel sends.
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

#include "collector/kinds/unix_diag.h"

namespace crpipe::collector {
namespace {

// Builds one SOCK_DIAG_BY_FAMILY message the way the kernel lays it out.
class DiagMsg {
 public:
  DiagMsg(uint8_t type, uint8_t state, uint32_t ino) {
    unix_diag_msg m{};
    m.udiag_family = AF_UNIX;
    m.udiag_type = type;
    m.udiag_state = state;
    m.udiag_ino = ino;
    append(&m, sizeof(m));
  }
  DiagMsg& attr(uint16_t type, const void* data, size_t len) {
    nlattr a{};
    a.nla_len = static_cast<uint16_t>(NLA_HDRLEN + len);
    a.nla_type = type;
    append(&a, sizeof(a));
    append(data, len);
    payload_.resize(NLA_ALIGN(payload_.size()));
    return *this;
  }
  DiagMsg& u32(uint16_t type, uint32_t v) { return attr(type, &v, sizeof(v)); }
  DiagMsg& u8(uint16_t type, uint8_t v) { return attr(type, &v, sizeof(v)); }
  DiagMsg& name(const std::string& n) { return attr(UNIX_DIAG_NAME, n.data(), n.size()); }

  // nlmsghdr + payload, appended to `out`.
  void appendTo(std::vector<uint8_t>& out, uint16_t nlType = SOCK_DIAG_BY_FAMILY) const {
    nlmsghdr h{};
    h.nlmsg_len = static_cast<uint32_t>(NLMSG_HDRLEN + payload_.size());
    h.nlmsg_type = nlType;
    h.nlmsg_flags = NLM_F_MULTI;
    size_t at = out.size();
    out.resize(at + NLMSG_ALIGN(h.nlmsg_len));
    std::memcpy(out.data() + at, &h, sizeof(h));
    std::memcpy(out.data() + at + NLMSG_HDRLEN, payload_.data(), payload_.size());
  }
  std::span<const uint8_t> payload() const { return payload_; }

 private:
  void append(const void* p, size_t n) {
    // resize + memcpy: GCC 12 warns falsely (stringop-overflow) on vector::insert here.
    size_t at = payload_.size();
    payload_.resize(at + n);
    if (n > 0) {
      std::memcpy(payload_.data() + at, p, n);
    }
  }
  std::vector<uint8_t> payload_;
};

void appendDone(std::vector<uint8_t>& out) {
  nlmsghdr h{};
  h.nlmsg_len = NLMSG_HDRLEN + sizeof(int);
  h.nlmsg_type = NLMSG_DONE;
  size_t at = out.size();
  out.resize(at + NLMSG_ALIGN(h.nlmsg_len));
  std::memcpy(out.data() + at, &h, sizeof(h));
}

TEST(UnixDiag, ListenerWithPathNameIconsAndBacklog) {
  std::string path("/run/x.sock\0", 12);  // the kernel keeps the NUL of a path name
  unix_diag_vfs vfs{4711, 0xfd00};
  unix_diag_rqlen rq{2, 128};  // listener: 2 queued connections, backlog 128
  uint32_t icons[] = {9001, 0};
  DiagMsg m(SOCK_STREAM, TCP_LISTEN, 300);
  m.name(path)
      .attr(UNIX_DIAG_VFS, &vfs, sizeof(vfs))
      .attr(UNIX_DIAG_ICONS, icons, sizeof(icons))
      .attr(UNIX_DIAG_RQLEN, &rq, sizeof(rq))
      .u8(UNIX_DIAG_SHUTDOWN, 0)
      .u32(UNIX_DIAG_UID, 1000);
  auto sk = parseUnixDiagPayload(m.payload());
  ASSERT_TRUE(sk) << sk.error().str();
  EXPECT_EQ(sk->ino, 300u);
  EXPECT_EQ(sk->type, SOCK_STREAM);
  EXPECT_EQ(sk->state, TCP_LISTEN);
  ASSERT_TRUE(sk->name);
  EXPECT_EQ(*sk->name, path);
  EXPECT_EQ(sk->vfsIno, 4711u);
  EXPECT_EQ(sk->vfsDev, 0xfd00u);
  EXPECT_EQ(sk->icons, (std::vector<uint32_t>{9001, 0}));
  EXPECT_EQ(sk->rqueue, 2u);
  EXPECT_EQ(sk->wqueue, 128u);
  EXPECT_EQ(sk->shutdown, 0);
  EXPECT_EQ(sk->uid, 1000u);
  EXPECT_EQ(sk->peer, 0u);
}

TEST(UnixDiag, AbstractNameWithNulsAndPeerAndShutdown) {
  std::string abs("\0a\0b\0", 5);
  DiagMsg m(SOCK_SEQPACKET, TCP_ESTABLISHED, 41);
  m.name(abs).u32(UNIX_DIAG_PEER, 42).u8(UNIX_DIAG_SHUTDOWN, 3);
  uint32_t mem[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  m.attr(UNIX_DIAG_MEMINFO, mem, sizeof(mem));
  auto sk = parseUnixDiagPayload(m.payload());
  ASSERT_TRUE(sk) << sk.error().str();
  ASSERT_TRUE(sk->name);
  EXPECT_EQ(sk->name->size(), 5u);
  EXPECT_EQ(*sk->name, abs);
  EXPECT_EQ(sk->peer, 42u);
  EXPECT_EQ(sk->shutdown, 3);
  EXPECT_EQ(sk->meminfo.size(), 9u);
  EXPECT_FALSE(sk->vfsIno);
  EXPECT_EQ(printableUnixName(abs), "@a\\0b\\0");
}

TEST(UnixDiag, UnboundSocketHasNoName) {
  DiagMsg m(SOCK_DGRAM, TCP_CLOSE, 7);
  m.u8(UNIX_DIAG_SHUTDOWN, 0);
  auto sk = parseUnixDiagPayload(m.payload());
  ASSERT_TRUE(sk);
  EXPECT_FALSE(sk->name);
  EXPECT_TRUE(sk->icons.empty());
}

TEST(UnixDiag, BufferOfSeveralMessagesThenDone) {
  std::vector<uint8_t> buf;
  DiagMsg(SOCK_STREAM, TCP_ESTABLISHED, 1).u32(UNIX_DIAG_PEER, 2).appendTo(buf);
  DiagMsg(SOCK_STREAM, TCP_ESTABLISHED, 2).u32(UNIX_DIAG_PEER, 1).appendTo(buf);
  appendDone(buf);
  DiagMsg(SOCK_DGRAM, TCP_CLOSE, 3).appendTo(buf);  // after DONE: not read
  std::vector<UnixDiagSocket> out;
  bool done = false;
  ASSERT_TRUE(parseUnixDiagBuffer(buf, out, done));
  EXPECT_TRUE(done);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].peer, 2u);
  EXPECT_EQ(out[1].peer, 1u);
}

TEST(UnixDiag, OddOffsetParsesTheSame) {
  std::vector<uint8_t> buf(1, 0xaa);  // one byte before the payload: unaligned span
  DiagMsg m(SOCK_STREAM, TCP_ESTABLISHED, 5);
  m.u32(UNIX_DIAG_PEER, 6).name(std::string("\0xyz", 4));
  buf.resize(1 + m.payload().size());
  std::memcpy(buf.data() + 1, m.payload().data(), m.payload().size());
  auto sk = parseUnixDiagPayload(std::span<const uint8_t>(buf).subspan(1));
  ASSERT_TRUE(sk) << sk.error().str();
  EXPECT_EQ(sk->peer, 6u);
  EXPECT_EQ(*sk->name, std::string("\0xyz", 4));
}

TEST(UnixDiag, RejectsShortAttributesAndTruncatedMessages) {
  DiagMsg m(SOCK_STREAM, TCP_ESTABLISHED, 5);
  uint16_t shortPeer = 1;
  m.attr(UNIX_DIAG_PEER, &shortPeer, sizeof(shortPeer));
  auto sk = parseUnixDiagPayload(m.payload());
  ASSERT_FALSE(sk);
  EXPECT_NE(sk.error().str().find("PEER"), std::string::npos) << sk.error().str();

  uint8_t tiny[4] = {AF_UNIX, 1, 1, 0};
  EXPECT_FALSE(parseUnixDiagPayload(tiny));

  std::vector<uint8_t> buf;
  DiagMsg(SOCK_STREAM, TCP_ESTABLISHED, 1).appendTo(buf);
  buf.resize(buf.size() - 4);  // the last message claims more than is there
  std::vector<UnixDiagSocket> out;
  bool done = false;
  auto st = parseUnixDiagBuffer(buf, out, done);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("offset 0"), std::string::npos) << st.error().str();
}

TEST(UnixDiag, ErrorMessageCarriesErrno) {
  std::vector<uint8_t> buf(NLMSG_ALIGN(NLMSG_HDRLEN + sizeof(nlmsgerr)));
  nlmsghdr h{};
  h.nlmsg_len = static_cast<uint32_t>(buf.size());
  h.nlmsg_type = NLMSG_ERROR;
  nlmsgerr e{};
  e.error = -EPERM;
  std::memcpy(buf.data(), &h, sizeof(h));
  std::memcpy(buf.data() + NLMSG_HDRLEN, &e, sizeof(e));
  std::vector<UnixDiagSocket> out;
  bool done = false;
  auto st = parseUnixDiagBuffer(buf, out, done);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().err(), EPERM);
}

TEST(UnixDiag, TableFindsListenerOfPendingClient) {
  UnixDiagTable t;
  UnixDiagSocket l;
  l.ino = 10;
  l.type = SOCK_STREAM;
  l.state = TCP_LISTEN;
  l.icons = {11, 0, 12};
  UnixDiagSocket c;
  c.ino = 11;
  c.state = TCP_ESTABLISHED;
  uint32_t id = t.addNamespace(4026531833u, {l, c});
  EXPECT_EQ(id, 1u);
  EXPECT_EQ(t.addNamespace(4026531833u, {}), 1u);  // the same namespace again: ignored
  EXPECT_EQ(t.listenerOfClient(11), 10u);
  EXPECT_EQ(t.listenerOfClient(12), 10u);
  EXPECT_FALSE(t.listenerOfClient(0));
  ASSERT_NE(t.find(11), nullptr);
  EXPECT_EQ(t.find(11)->nsId, 1u);
  EXPECT_EQ(t.find(99), nullptr);
}

}  // namespace
}  // namespace crpipe::collector
