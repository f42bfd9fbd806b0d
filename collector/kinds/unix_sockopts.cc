#include "collector/kinds/unix_sockopts.h"

#include <linux/filter.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstring>
#include <span>
#include <string>
#include <vector>

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif

namespace crpipe::collector {

namespace {

// Classic BPF attached with SO_ATTACH_FILTER, `count` instructions (SO_GET_FILTER with no
// room gives the count). Each instruction is stored as CRIU does:
// code | jt << 16 | jf << 24 | k << 32.
Status readFilter(int fd, socklen_t count, images::SkOptsEntry& opts) {
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

Result<UnixSockOpts> readUnixSockOpts(int fd, SockoptReader& reader,
                                      const KnownUnixSockOpts& known, int* domain) {
  UnixSockOpts r;
  images::SkOptsEntry& o = r.opts;
  using Opt = SockoptReader::Opt;

  // Every option in one go (one io_uring submission where the kernel has it), then each
  // checked in turn. Those marked optional may be missing on older kernels or unset.
  struct Want {
    const char* what;
    bool optional;
  };
  int sndbuf = 0, rcvbuf = 0, bufLock = 0, priority = 0, rcvlowat = 0, mark = 0;
  int reuseaddr = 0, reuseport = 0, passcred = 0, passsec = 0, dontroute = 0, nocheck = 0;
  int broadcast = 0, keepalive = 0, oobinline = 0, peekoff = 0;
  timeval snd{}, rcv{};
  linger lg{};
  char dev[64] = {};
  ucred cred{};
  Opt opts[32];  // room for every option below
  Want wants[32];
  size_t n = 0;
  auto add = [&](int name, void* val, socklen_t len, const char* what, bool optional = false) {
    opts[n] = Opt{name, val, len, 0};
    wants[n] = Want{what, optional};
    return n++;
  };
  // Kernel doubles a size on set and getsockopt shows the doubled value; CRIU records
  // it as shown, so does crpipe (restore sets half of it with SO_*BUFFORCE). sock_diag may
  // have given them already.
  if (!known.sndbuf) {
    add(SO_SNDBUF, &sndbuf, sizeof(int), "SO_SNDBUF");
  }
  if (!known.rcvbuf) {
    add(SO_RCVBUF, &rcvbuf, sizeof(int), "SO_RCVBUF");
  }
  // SO_BUF_LOCK (5.14+) says whether the sizes were set by the user (then they stay).
  const size_t iBufLock = add(SO_BUF_LOCK, &bufLock, sizeof(int), "SO_BUF_LOCK", true);
  add(SO_SNDTIMEO, &snd, sizeof(snd), "SO_SNDTIMEO");
  add(SO_RCVTIMEO, &rcv, sizeof(rcv), "SO_RCVTIMEO");
  add(SO_PRIORITY, &priority, sizeof(int), "SO_PRIORITY");
  add(SO_RCVLOWAT, &rcvlowat, sizeof(int), "SO_RCVLOWAT");
  add(SO_MARK, &mark, sizeof(int), "SO_MARK");
  add(SO_REUSEADDR, &reuseaddr, sizeof(int), "SO_REUSEADDR");
  add(SO_REUSEPORT, &reuseport, sizeof(int), "SO_REUSEPORT");
  add(SO_PASSCRED, &passcred, sizeof(int), "SO_PASSCRED");
  add(SO_PASSSEC, &passsec, sizeof(int), "SO_PASSSEC");
  add(SO_DONTROUTE, &dontroute, sizeof(int), "SO_DONTROUTE");
  add(SO_NO_CHECK, &nocheck, sizeof(int), "SO_NO_CHECK");
  add(SO_BROADCAST, &broadcast, sizeof(int), "SO_BROADCAST");
  add(SO_KEEPALIVE, &keepalive, sizeof(int), "SO_KEEPALIVE");
  add(SO_OOBINLINE, &oobinline, sizeof(int), "SO_OOBINLINE");
  add(SO_PEEK_OFF, &peekoff, sizeof(int), "SO_PEEK_OFF");
  add(SO_LINGER, &lg, sizeof(lg), "SO_LINGER");
  const size_t iDev = add(SO_BINDTODEVICE, dev, sizeof(dev), "SO_BINDTODEVICE", true);
  // No room: the kernel reports the filter's length in instructions.
  const size_t iFilter = add(SO_GET_FILTER, nullptr, 0, "SO_GET_FILTER) length (");
  // SO_PEERCRED of an unconnected socket reads as pid 0, uid/gid -1.
  add(SO_PEERCRED, &cred, sizeof(cred), "SO_PEERCRED");
  int family = -1;
  const size_t iDomain = domain != nullptr ? add(SO_DOMAIN, &family, sizeof(int), "SO_DOMAIN", true)
                                           : n;
  reader.read(fd, std::span<Opt>(opts, n));
  if (domain != nullptr) {
    *domain = opts[iDomain].err == 0 ? family : -1;
  }
  for (size_t i = 0; i < n; ++i) {
    if (opts[i].err != 0 && !wants[i].optional) {
      std::string what = wants[i].what;
      if (i == iFilter) {
        return fail(Error::sys(opts[i].err, "getsockopt(SO_GET_FILTER) length"));
      }
      return fail(Error::sys(opts[i].err, "getsockopt(" + what + ")"));
    }
  }

  o.set_so_sndbuf(known.sndbuf ? *known.sndbuf : static_cast<uint32_t>(sndbuf));
  o.set_so_rcvbuf(known.rcvbuf ? *known.rcvbuf : static_cast<uint32_t>(rcvbuf));
  if (opts[iBufLock].err == 0) {
    o.set_so_buf_lock(static_cast<uint32_t>(bufLock));
  }
  o.set_so_snd_tmo_sec(static_cast<uint64_t>(snd.tv_sec));
  o.set_so_snd_tmo_usec(static_cast<uint64_t>(snd.tv_usec));
  o.set_so_rcv_tmo_sec(static_cast<uint64_t>(rcv.tv_sec));
  o.set_so_rcv_tmo_usec(static_cast<uint64_t>(rcv.tv_usec));
  o.set_so_priority(static_cast<uint32_t>(priority));
  o.set_so_rcvlowat(static_cast<uint32_t>(rcvlowat));
  o.set_so_mark(static_cast<uint32_t>(mark));
  o.set_reuseaddr(reuseaddr != 0);
  o.set_so_reuseport(reuseport != 0);
  o.set_so_passcred(passcred != 0);
  o.set_so_passsec(passsec != 0);
  o.set_so_dontroute(dontroute != 0);
  o.set_so_no_check(nocheck != 0);
  o.set_so_broadcast(broadcast != 0);
  o.set_so_keepalive(keepalive != 0);
  o.set_so_oobinline(static_cast<uint32_t>(oobinline));
  r.peekOff = peekoff;
  if (lg.l_onoff != 0) {
    o.set_so_linger(static_cast<uint32_t>(lg.l_linger));
  }
  if (opts[iDev].err == 0 && opts[iDev].len > 0 && dev[0] != '\0') {
    o.set_so_bound_dev(std::string(dev, strnlen(dev, sizeof(dev))));
  }
  CRPIPE_TRY(readFilter(fd, opts[iFilter].len, o));
  if (cred.pid != 0) {
    images::UcredEntry u;
    u.set_pid(static_cast<uint32_t>(cred.pid));
    u.set_uid(cred.uid);
    u.set_gid(cred.gid);
    r.peercred = u;
  }
  return r;
}

Result<UnixSockOpts> readUnixSockOpts(int fd, const KnownUnixSockOpts& known) {
  SockoptReader syscalls(false);
  return readUnixSockOpts(fd, syscalls, known);
}

}  // namespace crpipe::collector
