#include "collector/kinds/unix_fast.h"

#include <sys/socket.h>

#include <climits>

namespace crpipe::collector {

namespace {

// sock_get_timeout(): jiffies as getsockopt(SO_*TIMEO) shows them.
void timeoutOf(int64_t jiffies, uint32_t hz, uint64_t& sec, uint64_t& usec) {
  if (jiffies == LONG_MAX) {  // MAX_SCHEDULE_TIMEOUT: no timeout
    sec = 0;
    usec = 0;
    return;
  }
  sec = static_cast<uint64_t>(jiffies / hz);
  usec = static_cast<uint64_t>(((jiffies % hz) * 1000000) / hz);
}

}  // namespace

std::optional<UnixSockOpts> unixSockOptsFromFast(const FastUnix& u) {
  return unixSockOptsFromUsk(u.rec);
}

std::optional<UnixSockOpts> unixSockOptsFromUsk(const crp_fast_usk& r) {
  if ((r.flags & CRP_USK_FILTER) != 0 || r.bound_dev_if != 0) {
    return std::nullopt;
  }
  bool needHz = r.sndtimeo != LONG_MAX || r.rcvtimeo != LONG_MAX || (r.flags & CRP_USK_LINGER);
  if (needHz && r.hz == 0) {
    return std::nullopt;
  }
  UnixSockOpts out;
  images::SkOptsEntry& o = out.opts;
  // Field by field as readUnixSockOpts() sets them: which fields are present matters.
  o.set_so_sndbuf(static_cast<uint32_t>(r.sndbuf));
  o.set_so_rcvbuf(static_cast<uint32_t>(r.rcvbuf));
  o.set_so_buf_lock(r.userlocks & 3);  // SOCK_BUF_LOCK_MASK, as getsockopt(SO_BUF_LOCK)
  uint64_t sec = 0, usec = 0;
  timeoutOf(r.sndtimeo, r.hz, sec, usec);
  o.set_so_snd_tmo_sec(sec);
  o.set_so_snd_tmo_usec(usec);
  timeoutOf(r.rcvtimeo, r.hz, sec, usec);
  o.set_so_rcv_tmo_sec(sec);
  o.set_so_rcv_tmo_usec(usec);
  o.set_so_priority(r.priority);
  o.set_so_rcvlowat(static_cast<uint32_t>(r.rcvlowat));
  o.set_so_mark(r.mark);
  o.set_reuseaddr(r.reuse != 0);
  o.set_so_reuseport((r.flags & CRP_USK_REUSEPORT) != 0);
  o.set_so_passcred((r.flags & CRP_USK_PASSCRED) != 0);
  o.set_so_passsec((r.flags & CRP_USK_PASSSEC) != 0);
  o.set_so_dontroute((r.flags & CRP_USK_DONTROUTE) != 0);
  o.set_so_no_check((r.flags & CRP_USK_NO_CHECK) != 0);
  o.set_so_broadcast((r.flags & CRP_USK_BROADCAST) != 0);
  o.set_so_keepalive((r.flags & CRP_USK_KEEPALIVE) != 0);
  o.set_so_oobinline((r.flags & CRP_USK_OOBINLINE) != 0 ? 1 : 0);
  out.peekOff = r.peek_off;
  if ((r.flags & CRP_USK_LINGER) != 0) {
    o.set_so_linger(static_cast<uint32_t>(r.lingertime / r.hz));
  }
  // SO_PEERCRED reads pid 0 for a socket without a peer pid, or one this collector's pid
  // namespace cannot see; crpipe records it only when the pid is known.
  if ((r.flags & CRP_USK_PEER_PID) != 0 && r.peer_pid != 0) {
    images::UcredEntry c;
    c.set_pid(r.peer_pid);
    c.set_uid(r.peer_uid);
    c.set_gid(r.peer_gid);
    out.peercred = c;
  }
  return out;
}

std::vector<PeekedMessage> unixQueueFromFast(const FastUnix& u, int type) {
  std::vector<PeekedMessage> out;
  auto credsOf = [](const FastSkb& s) {
    // With SO_PASSCRED on during a peek every message carries credentials; without a pid
    // the kernel reports pid 0 (recordQueue keeps credentials only with a pid).
    ucred c{};
    c.pid = static_cast<pid_t>((s.flags & CRP_SKB_CREDS) != 0 ? s.pid : 0);
    c.uid = (s.flags & CRP_SKB_CREDS) != 0 ? s.uid : 65534;
    c.gid = (s.flags & CRP_SKB_CREDS) != 0 ? s.gid : 65534;
    return c;
  };
  if (type == SOCK_STREAM) {
    // A stream peek skips empty skbs and glues the next ones while the sender's
    // credentials stay those of the run's first skb (CRP_SKB_SAME compares with the last
    // non-empty skb, which is the same thing).
    bool open = false;
    for (const FastSkb& s : u.skbs) {
      if (s.data.empty()) {
        continue;
      }
      if (!open || (s.flags & CRP_SKB_SAME) == 0) {
        PeekedMessage m;
        m.creds = credsOf(s);
        out.push_back(std::move(m));
        open = true;
      }
      out.back().data.append(s.data);
    }
    return out;
  }
  for (size_t i = 0; i < u.skbs.size(); ++i) {
    const FastSkb& s = u.skbs[i];
    if (i != 0 && s.data.empty() && (s.flags & CRP_SKB_PEEKED) != 0) {
      continue;
    }
    PeekedMessage m;
    m.data.assign(s.data);
    m.creds = credsOf(s);
    if (type == SOCK_DGRAM && (s.flags & CRP_SKB_ADDR) != 0) {
      m.addr = std::string(s.addr);
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace crpipe::collector
