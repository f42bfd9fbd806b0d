// readEmbryoQueues on real sockets: needs root (BPF, pagemap) and a kernel with iter/unix.
#include "collector/kinds/unix_embryo_queues.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace crpipe::collector {
namespace {

uint32_t inoOf(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return static_cast<uint32_t>(st.st_ino);
}

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>((i * 7 + seed) % 251);
  }
  return s;
}

// A listening socket on an abstract address unique to this process and `tag`.
struct Listener {
  UniqueFd fd;
  sockaddr_un addr{};
  socklen_t len = 0;

  Listener(int type, const std::string& tag) : fd(socket(AF_UNIX, type | SOCK_CLOEXEC, 0)) {
    std::string name = "crpipe-embryo-test-" + std::to_string(getpid()) + "-" + tag;
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len), 0) << strerror(errno);
    EXPECT_EQ(listen(fd.get(), 64), 0);
  }
  UniqueFd connectClient(int type) const {
    UniqueFd c(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    EXPECT_EQ(connect(c.get(), reinterpret_cast<const sockaddr*>(&addr), len), 0)
        << strerror(errno);
    return c;
  }
  uint32_t ino() const { return inoOf(fd.get()); }
};

void sendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << strerror(errno);
    done += static_cast<size_t>(n);
  }
}

// Everything readable now from a stream socket (stops at EOF or when nothing is queued).
std::string drain(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) {
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

std::string joined(const EmbryoQueue& q) {
  std::string all;
  for (const auto& m : q.messages) {
    all += m.data;
  }
  return all;
}

#define READ_OR_SKIP(var, inos, netns)                                           \
  auto var = readEmbryoQueues(inos, netns);                                      \
  if (!var && geteuid() != 0) GTEST_SKIP() << "not root: " << var.error().str(); \
  ASSERT_TRUE(var) << var.error().str()

TEST(UnixEmbryoQueues, StreamEmbryosAreReadWithoutConsumingThem) {
  Listener l(SOCK_STREAM, "stream");
  UniqueFd c1 = l.connectClient(SOCK_STREAM);
  sendAll(c1.get(), "hello");
  sendAll(c1.get(), "world");
  UniqueFd c2 = l.connectClient(SOCK_STREAM);
  UniqueFd c3 = l.connectClient(SOCK_STREAM);
  const std::string big = pattern(100 * 1024, 3);  // mostly in page fragments
  sendAll(c3.get(), big);
  c3.reset();
  const uint32_t ino1 = inoOf(c1.get()), ino2 = inoOf(c2.get());

  READ_OR_SKIP(queues, {l.ino()}, -1);
  ASSERT_EQ(queues->size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*queues)[i].listenerIno, l.ino());
    EXPECT_EQ((*queues)[i].acceptIndex, i);
    EXPECT_EQ((*queues)[i].embryoIno, 0u);  // no inode before accept()
    // who connected: what SO_PEERCRED of the accepted socket will say
    EXPECT_TRUE((*queues)[i].hasPeerCred);
    EXPECT_EQ((*queues)[i].peerPid, static_cast<uint32_t>(getpid()));
    EXPECT_EQ((*queues)[i].peerUid, geteuid());
    EXPECT_EQ((*queues)[i].peerGid, getegid());
  }
  const EmbryoQueue& q1 = (*queues)[0];
  EXPECT_EQ(q1.peerIno, ino1);
  EXPECT_EQ(q1.shutdown, 0);
  ASSERT_EQ(q1.messages.size(), 2u);  // one skb per write
  EXPECT_EQ(q1.messages[0].data, "hello");
  EXPECT_EQ(q1.messages[1].data, "world");
  for (const auto& m : q1.messages) {
    EXPECT_FALSE(m.hasRights);
    EXPECT_FALSE(m.oob);
    // the kernel stamps credentials on data for a socket that has no struct socket yet
    EXPECT_TRUE(m.hasCreds);
    EXPECT_EQ(m.credPid, static_cast<uint32_t>(getpid()));
    EXPECT_EQ(m.credUid, getuid());
    EXPECT_EQ(m.credGid, getgid());
  }
  EXPECT_EQ((*queues)[1].peerIno, ino2);
  EXPECT_TRUE((*queues)[1].messages.empty());
  const EmbryoQueue& q3 = (*queues)[2];
  EXPECT_EQ(q3.peerIno, 0u);          // client closed
  EXPECT_EQ(q3.shutdown, 3);          // so the server will read EOF after the data
  EXPECT_GE(q3.messages.size(), 2u);  // the kernel cut the 100 KiB write into skbs
  for (const auto& m : q3.messages) {
    EXPECT_FALSE(m.data.empty());
  }
  EXPECT_TRUE(joined(q3) == big) << "100 KiB payload differs";

  // Nothing was consumed: accept() hands out the three connections in order, data intact.
  UniqueFd a1(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  UniqueFd a2(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  UniqueFd a3(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(a1.valid() && a2.valid() && a3.valid());
  ucred cred{};
  socklen_t credLen = sizeof(cred);
  ASSERT_EQ(getsockopt(a1.get(), SOL_SOCKET, SO_PEERCRED, &cred, &credLen), 0);
  EXPECT_EQ(static_cast<uint32_t>(cred.pid), q1.peerPid);
  EXPECT_EQ(cred.uid, q1.peerUid);
  EXPECT_EQ(cred.gid, q1.peerGid);
  EXPECT_EQ(drain(a1.get()), "helloworld");
  EXPECT_EQ(drain(a2.get()), "");
  EXPECT_TRUE(drain(a3.get()) == big);
  char byte;
  EXPECT_EQ(recv(a3.get(), &byte, 1, MSG_DONTWAIT), 0);  // EOF
}

TEST(UnixEmbryoQueues, SeqpacketRecordsRightsAndUnlistedListener) {
  Listener l(SOCK_SEQPACKET, "seqpacket");
  Listener other(SOCK_STREAM, "unlisted");
  UniqueFd otherClient = other.connectClient(SOCK_STREAM);
  sendAll(otherClient.get(), "not asked for");

  UniqueFd c = l.connectClient(SOCK_SEQPACKET);
  const std::vector<std::string> records = {"a", "", "bcd", pattern(50 * 1024, 5)};
  for (const auto& r : records) {
    ASSERT_EQ(send(c.get(), r.data(), r.size(), 0), static_cast<ssize_t>(r.size()));
  }
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd pr(p[0]), pw(p[1]);
  {  // one more record carrying a file
    char data[] = "fd";
    iovec iov{data, 2};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    ASSERT_EQ(sendmsg(c.get(), &msg, 0), 2);
  }

  READ_OR_SKIP(queues, {l.ino()}, -1);
  ASSERT_EQ(queues->size(), 1u);  // `other` was not asked for
  const EmbryoQueue& q = (*queues)[0];
  EXPECT_EQ(q.peerIno, inoOf(c.get()));
  ASSERT_EQ(q.messages.size(), records.size() + 1);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_TRUE(q.messages[i].data == records[i]) << "record " << i;
    EXPECT_FALSE(q.messages[i].hasRights);
  }
  EXPECT_EQ(q.messages.back().data, "fd");
  EXPECT_TRUE(q.messages.back().hasRights);
  EXPECT_EQ(q.messages.back().rightsCount, 1u);

  UniqueFd a(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(a.valid());
  std::string buf(64 * 1024, '\0');
  for (const auto& r : records) {  // boundaries kept, nothing consumed
    ssize_t n = recv(a.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    ASSERT_EQ(n, static_cast<ssize_t>(r.size()));
    EXPECT_TRUE(buf.substr(0, r.size()) == r);
  }
  EXPECT_EQ(recv(a.get(), buf.data(), buf.size(), MSG_DONTWAIT), 2);
  UniqueFd otherServer(accept4(other.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_EQ(drain(otherServer.get()), "not asked for");
}

TEST(UnixEmbryoQueues, IdleListenersAndOtherSocketsGiveNothing) {
  Listener idle(SOCK_STREAM, "idle");
  int d[2], s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
  UniqueFd d0(d[0]), d1(d[1]), s0(s[0]), s1(s[1]);
  ASSERT_EQ(send(d0.get(), "x", 1, 0), 1);
  ASSERT_EQ(send(s0.get(), "y", 1, 0), 1);
  READ_OR_SKIP(queues, (std::set<uint32_t>{idle.ino(), inoOf(d1.get()), inoOf(s1.get())}), -1);
  EXPECT_TRUE(queues->empty());
  auto none = readEmbryoQueues({}, -1);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST(UnixEmbryoQueues, ReadsAnotherNetworkNamespace) {
  UniqueFd nsFd;
  std::unique_ptr<Listener> l;
  UniqueFd client;
  std::string why;
  std::thread([&] {  // setns/unshare of the net namespace affect only this thread
    if (unshare(CLONE_NEWNET) != 0) {
      why = std::string("unshare(CLONE_NEWNET): ") + strerror(errno);
      return;
    }
    nsFd = UniqueFd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    l = std::make_unique<Listener>(SOCK_STREAM, "netns");
    client = l->connectClient(SOCK_STREAM);
    sendAll(client.get(), "from another netns");
  })
      .join();
  if (!why.empty()) {
    GTEST_SKIP() << why;
  }
  ASSERT_TRUE(nsFd.valid());
  READ_OR_SKIP(here, {l->ino()}, -1);
  EXPECT_TRUE(here->empty());  // the iterator of our namespace does not see it
  READ_OR_SKIP(there, {l->ino()}, nsFd.get());
  ASSERT_EQ(there->size(), 1u);
  ASSERT_EQ((*there)[0].messages.size(), 1u);
  EXPECT_EQ((*there)[0].messages[0].data, "from another netns");
}

}  // namespace
}  // namespace crpipe::collector
