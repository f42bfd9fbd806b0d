// The sock_diag request itself, through libnl3: one dump of every AF_UNIX socket of a
// network namespace. Parsing lives in unix_diag.cc so that it can be tested on canned
// payloads.
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sched.h>
#include <sys/socket.h>

#include <memory>
#include <thread>

#include "collector/kinds/unix_diag.h"

namespace crpipe::collector {

namespace {

struct NlSockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using NlSockPtr = std::unique_ptr<nl_sock, NlSockFree>;

struct DumpState {
  std::vector<UnixDiagSocket> sockets;
  std::optional<Error> error;
};

int onValid(nl_msg* msg, void* arg) {
  auto* st = static_cast<DumpState*>(arg);
  nlmsghdr* h = nlmsg_hdr(msg);
  if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
    return NL_SKIP;
  }
  auto sk = parseUnixDiagPayload(std::span<const uint8_t>(
      static_cast<const uint8_t*>(nlmsg_data(h)), static_cast<size_t>(nlmsg_datalen(h))));
  if (!sk) {
    st->error = std::move(sk).error();
    return NL_STOP;
  }
  st->sockets.push_back(std::move(*sk));
  return NL_OK;
}

Result<NlSockPtr> connectSockDiag() {
  NlSockPtr sock(nl_socket_alloc());
  if (!sock) {
    return failMsg("nl_socket_alloc failed");
  }
  // A dump message may be larger than a page (the ICONS of a listener with many queued
  // connections): let libnl peek at each message's size before reading it.
  nl_socket_enable_msg_peek(sock.get());
  int err = nl_connect(sock.get(), NETLINK_SOCK_DIAG);
  if (err < 0) {
    return failMsg(std::string("nl_connect(NETLINK_SOCK_DIAG): ") + nl_geterror(err));
  }
  return sock;
}

Result<std::vector<UnixDiagSocket>> dumpOn(nl_sock* sock) {
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.udiag_states = ~0u;  // every state
  req.udiag_show = unixDiagShowMask();
  int err = nl_send_simple(sock, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, &req,
                           sizeof(req));
  if (err < 0) {
    return failMsg(std::string("sock_diag request: ") + nl_geterror(err));
  }
  DumpState st;
  err = nl_socket_modify_cb(sock, NL_CB_VALID, NL_CB_CUSTOM, onValid, &st);
  if (err < 0) {
    return failMsg(std::string("nl_socket_modify_cb: ") + nl_geterror(err));
  }
  err = nl_recvmsgs_default(sock);
  if (st.error) {
    return fail(std::move(*st.error));
  }
  if (err < 0) {
    return failMsg(std::string("sock_diag answer: ") + nl_geterror(err));
  }
  return std::move(st.sockets);
}

}  // namespace

Result<std::vector<UnixDiagSocket>> dumpUnixDiag(int netnsFd) {
  if (netnsFd < 0) {
    auto sock = connectSockDiag();
    if (!sock) {
      return fail(std::move(sock).error());
    }
    return dumpOn(sock->get());
  }
  // A netlink socket belongs to the namespace of the thread that created it, so a
  // short-lived thread joins the target namespace and creates it there; the collector's
  // other threads stay where they are. The dump itself may run anywhere afterwards.
  Result<NlSockPtr> sock = failMsg("not created");
  std::thread t([&sock, netnsFd]() {
    if (::setns(netnsFd, CLONE_NEWNET) != 0) {
      sock = fail(Error::sys("setns(CLONE_NEWNET)"));
      return;
    }
    sock = connectSockDiag();
  });
  t.join();
  if (!sock) {
    return fail(std::move(sock).error());
  }
  return dumpOn(sock->get());
}

}  // namespace crpipe::collector
