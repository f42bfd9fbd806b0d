#include "collector/kinds/unix_sockopts.h"

#include <linux/filter.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstring>
#include <vector>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

namespace crpipe::collector {

namespace {

Result<int> getInt(int fd, int opt, const char* name) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0) {
    return fail(Error::sys(std::string("getsockopt(") + name + ")"));
  }
  return v;
}

Result<timeval> getTimeval(int fd, int opt, const char* name) {
  timeval tv{};
  socklen_t len = sizeof(tv);
  if (::getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) {
    return fail(Error::sys(std::string("getsockopt(") + name + ")"));
  }
  return tv;
}

// Classic BPF attached with SO_ATTACH_FILTER. SO_GET_FILTER counts in instructions: a
// zero length asks for the count, then the program is read whole. Each instruction is
// stored as CRIU does: code | jt << 16 | jf << 24 | k << 32.
Status readFilter(int fd, images::SkOptsEntry& opts) {
  socklen_t count = 0;
  if (::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, nullptr, &count) != 0) {
    return fail(Error::sys("getsockopt(SO_GET_FILTER) length"));
  }
  if (count == 0) {
    return {};
  }
  std::vector<sock_filter> prog(count);
  socklen_t got = count;
  if (::getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, prog.data(), &got) != 0) {
    return fail(Error::sys("getsockopt(SO_GET_FILTER)"));
  }
  for (socklen_t i = 0; i < got && i < count; ++i) {
    const sock_filter& f = prog[i];
    uint64_t v = static_cast<uint64_t>(f.code) | static_cast<uint64_t>(f.jt) << 16 |
                 static_cast<uint64_t>(f.jf) << 24 | static_cast<uint64_t>(f.k) << 32;
    opts.add_so_filter(v);
  }
  return {};
}

}  // namespace

Result<UnixSockOpts> readUnixSockOpts(int fd, const KnownUnixSockOpts& known) {
  UnixSockOpts r;
  images::SkOptsEntry& o = r.opts;

#define CRPIPE_GET_INT(var, opt)                \
  auto var = getInt(fd, opt, #opt);             \
  if (!var) {                                   \
    return fail(std::move(var).error());        \
  }

  // Kernel doubles a size on set and getsockopt shows the doubled value; CRIU records
  // it as shown, so does crpipe (restore sets half of it with SO_*BUFFORCE).
  if (known.sndbuf) {
    o.set_so_sndbuf(*known.sndbuf);
  } else {
    CRPIPE_GET_INT(sndbuf, SO_SNDBUF);
    o.set_so_sndbuf(static_cast<uint32_t>(*sndbuf));
  }
  if (known.rcvbuf) {
    o.set_so_rcvbuf(*known.rcvbuf);
  } else {
    CRPIPE_GET_INT(rcvbuf, SO_RCVBUF);
    o.set_so_rcvbuf(static_cast<uint32_t>(*rcvbuf));
  }
  // SO_BUF_LOCK (5.14+) says whether the sizes were set by the user (then they stay).
  if (auto lock = getInt(fd, SO_BUF_LOCK, "SO_BUF_LOCK")) {
    o.set_so_buf_lock(static_cast<uint32_t>(*lock));
  }

  auto snd = getTimeval(fd, SO_SNDTIMEO, "SO_SNDTIMEO");
  if (!snd) {
    return fail(std::move(snd).error());
  }
  o.set_so_snd_tmo_sec(static_cast<uint64_t>(snd->tv_sec));
  o.set_so_snd_tmo_usec(static_cast<uint64_t>(snd->tv_usec));
  auto rcv = getTimeval(fd, SO_RCVTIMEO, "SO_RCVTIMEO");
  if (!rcv) {
    return fail(std::move(rcv).error());
  }
  o.set_so_rcv_tmo_sec(static_cast<uint64_t>(rcv->tv_sec));
  o.set_so_rcv_tmo_usec(static_cast<uint64_t>(rcv->tv_usec));

  CRPIPE_GET_INT(priority, SO_PRIORITY);
  o.set_so_priority(static_cast<uint32_t>(*priority));
  CRPIPE_GET_INT(rcvlowat, SO_RCVLOWAT);
  o.set_so_rcvlowat(static_cast<uint32_t>(*rcvlowat));
  CRPIPE_GET_INT(mark, SO_MARK);
  o.set_so_mark(static_cast<uint32_t>(*mark));
  CRPIPE_GET_INT(reuseaddr, SO_REUSEADDR);
  o.set_reuseaddr(*reuseaddr != 0);
  CRPIPE_GET_INT(reuseport, SO_REUSEPORT);
  o.set_so_reuseport(*reuseport != 0);
  CRPIPE_GET_INT(passcred, SO_PASSCRED);
  o.set_so_passcred(*passcred != 0);
  CRPIPE_GET_INT(passsec, SO_PASSSEC);
  o.set_so_passsec(*passsec != 0);
  CRPIPE_GET_INT(dontroute, SO_DONTROUTE);
  o.set_so_dontroute(*dontroute != 0);
  CRPIPE_GET_INT(nocheck, SO_NO_CHECK);
  o.set_so_no_check(*nocheck != 0);
  CRPIPE_GET_INT(broadcast, SO_BROADCAST);
  o.set_so_broadcast(*broadcast != 0);
  CRPIPE_GET_INT(keepalive, SO_KEEPALIVE);
  o.set_so_keepalive(*keepalive != 0);
  CRPIPE_GET_INT(oobinline, SO_OOBINLINE);
  o.set_so_oobinline(static_cast<uint32_t>(*oobinline));
  CRPIPE_GET_INT(peekoff, SO_PEEK_OFF);
  r.peekOff = *peekoff;
#undef CRPIPE_GET_INT

  linger lg{};
  socklen_t len = sizeof(lg);
  if (::getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) != 0) {
    return fail(Error::sys("getsockopt(SO_LINGER)"));
  }
  if (lg.l_onoff != 0) {
    o.set_so_linger(static_cast<uint32_t>(lg.l_linger));
  }

  char dev[64] = {};
  len = sizeof(dev);
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &len) == 0 && len > 0 &&
      dev[0] != '\0') {
    o.set_so_bound_dev(std::string(dev, strnlen(dev, sizeof(dev))));
  }

  CRPIPE_TRY(readFilter(fd, o));

  // SO_PEERCRED of an unconnected socket reads as pid 0, uid/gid -1.
  ucred cred{};
  len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return fail(Error::sys("getsockopt(SO_PEERCRED)"));
  }
  if (cred.pid != 0) {
    images::UcredEntry u;
    u.set_pid(static_cast<uint32_t>(cred.pid));
    u.set_uid(cred.uid);
    u.set_gid(cred.gid);
    r.peercred = u;
  }
  return r;
}

}  // namespace crpipe::collector
