// The unix socket planner's routing of pending connections (coordinator/unix_plan.cc): each
// client connects from the task its embryo's SO_PEERCRED names (else the listener's group
// maker), and a listener's accept queue becomes rounds of the pendingConnect phase, one
// per run of consecutive connections of one task.
#include "coordinator/unix_plan.h"

#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

#include "protos/sk_unix.pb.h"

namespace crpipe {
namespace {

class UnixPlanPending : public ::testing::Test {
 protected:
  // A task with the given unix socket ids at fds 3, 4, ...
  void task(pid_t pid, std::vector<uint32_t> ids) {
    TaskPlan t;
    t.pid = pid;
    int fd = 3;
    for (uint32_t id : ids) {
      images::FdinfoEntry e;
      e.set_id(id);
      e.set_fd(static_cast<uint32_t>(fd++));
      e.set_type(images::UNIXSK);
      t.fds.push_back(e);
    }
    plan_.tasks.push_back(std::move(t));
  }
  images::UnixSkEntry& sock(uint32_t id, uint32_t ino, uint32_t state, uint32_t peer,
                            std::string name = "") {
    images::FileEntry& f = plan_.files[id];
    f.set_id(id);
    f.set_type(images::UNIXSK);
    images::UnixSkEntry& u = *f.mutable_usk();
    u.set_id(id);
    u.set_ino(ino);
    u.set_type(SOCK_STREAM);
    u.set_state(state);
    u.set_peer(peer);
    u.set_name(std::move(name));
    return u;
  }
  void cred(images::UnixSkEntry& u, uint32_t pid, uint32_t uid = 0) {
    auto* c = u.mutable_crpipe()->mutable_peercred();
    c->set_pid(pid);
    c->set_uid(uid);
    c->set_gid(uid);
  }
  // An embryo of `listener` (its inode) at accept position `index`, connected by `pid`.
  void embryo(uint32_t id, uint32_t listener, uint32_t index, uint32_t clientIno, uint32_t pid,
              std::string name) {
    auto& u = sock(id, 0, TCP_ESTABLISHED, clientIno, std::move(name));
    u.mutable_crpipe()->set_listener(listener);
    u.mutable_crpipe()->set_icon_index(index);
    u.mutable_crpipe()->set_origin("embryo");
    cred(u, pid);
  }
  const TaskPlan& of(pid_t pid) const { return *plan_.task(pid); }

  RestorePlan plan_;
  RestoreImages images_;
  std::map<uint32_t, pid_t> creator_;
};

using Pending = std::vector<std::pair<uint32_t, uint32_t>>;

TEST_F(UnixPlanPending, InterleavedTasksBecomeRoundsInAcceptOrder) {
  // Listener id 1 (ino 10, "/l") in pid 100; clients 2 (ino 21) and 4 (ino 23) in 101,
  // client 3 (ino 22) in 102. Connected in the order 101, 102, 101, then an exited pid 999
  // whose client closed.
  task(100, {1});
  task(101, {2, 4});
  task(102, {3});
  const std::string name("/l\0", 3);
  cred(sock(1, 10, TCP_LISTEN, 0, name), 100);
  cred(sock(2, 21, TCP_ESTABLISHED, 10), 100);
  cred(sock(3, 22, TCP_ESTABLISHED, 10), 100);
  cred(sock(4, 23, TCP_ESTABLISHED, 10), 100);
  embryo(11, 10, 0, 21, 101, name);
  embryo(12, 10, 1, 22, 102, name);
  embryo(13, 10, 2, 23, 101, name);
  embryo(14, 10, 3, 0, 999, name);
  auto st = planUnixSockets(images_, PlanOptions{}, plan_, creator_);
  ASSERT_TRUE(st) << st.error().str();

  EXPECT_EQ(plan_.connectRounds, 4u);
  EXPECT_EQ(of(101).pendingConnects, (Pending{{11, 0}, {13, 2}}));
  EXPECT_EQ(of(102).pendingConnects, (Pending{{12, 1}}));
  // The exited pid is not in the tree: the listener's task connects (from a helper).
  EXPECT_EQ(of(100).pendingConnects, (Pending{{14, 3}}));
  // Each client is made where it connects; the listener where it listened.
  EXPECT_EQ(creator_.at(1), 100);
  EXPECT_EQ(creator_.at(2), 101);
  EXPECT_EQ(creator_.at(3), 102);
  EXPECT_EQ(creator_.at(4), 101);
  // The connecting tasks know the listener and the embryos.
  for (pid_t p : {101, 102}) {
    const auto& refs = of(p).unixRefs;
    EXPECT_NE(std::find(refs.begin(), refs.end(), 1u), refs.end()) << p;
    EXPECT_NE(std::find(refs.begin(), refs.end(), 11u), refs.end()) << p;
  }
}

TEST_F(UnixPlanPending, OneConnectingTaskIsOneRoundAndListenersShareRounds) {
  // Listener 1 (ino 10): its own task connects both. Listener 5 (ino 50, deleted): 101
  // then 100, two rounds; being deleted, it keeps its path for 101.
  task(100, {1, 2, 3, 5, 7});
  task(101, {6});
  const std::string a("/a\0", 3), b("/b\0", 3);
  cred(sock(1, 10, TCP_LISTEN, 0, a), 100);
  cred(sock(2, 21, TCP_ESTABLISHED, 10), 100);
  cred(sock(3, 22, TCP_ESTABLISHED, 10), 100);
  embryo(11, 10, 0, 21, 100, a);
  embryo(12, 10, 1, 22, 100, a);
  auto& l2 = sock(5, 50, TCP_LISTEN, 0, b);
  cred(l2, 100);
  l2.set_deleted(true);
  cred(sock(6, 61, TCP_ESTABLISHED, 50), 100);
  cred(sock(7, 62, TCP_ESTABLISHED, 50), 100);
  embryo(15, 50, 0, 61, 101, b);
  embryo(16, 50, 1, 62, 100, b);
  auto st = planUnixSockets(images_, PlanOptions{}, plan_, creator_);
  ASSERT_TRUE(st) << st.error().str();

  EXPECT_EQ(plan_.connectRounds, 2u);
  EXPECT_EQ(of(100).pendingConnects, (Pending{{11, 0}, {12, 0}, {16, 1}}));
  EXPECT_EQ(of(101).pendingConnects, (Pending{{15, 0}}));
  bool keeps = false;
  for (const auto& o : of(100).unixOrders) {
    if (o.fileId == 5) {
      keeps = o.keepPath;
    }
    EXPECT_TRUE(o.fileId == 5 || !o.keepPath) << o.fileId;
  }
  EXPECT_TRUE(keeps);
}

}  // namespace
}  // namespace crpipe
