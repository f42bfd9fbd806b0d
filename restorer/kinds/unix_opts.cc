#include "restorer/kinds/unix_opts.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <vector>

#include "common/unique_fd.h"

namespace crpipe::restorer {

namespace {

Status setInt(int fd, int opt, int v, const char* name) {
  if (::setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)) < 0) {
    return failSys(std::string("setsockopt(") + name + ", " + std::to_string(v) + ")");
  }
  return {};
}

Status setTimeout(int fd, int opt, uint64_t sec, uint64_t usec, const char* name) {
  timeval tv{static_cast<time_t>(sec), static_cast<suseconds_t>(usec)};
  if (::setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)) < 0) {
    return failSys(std::string("setsockopt(") + name + ")");
  }
  return {};
}

int getInt(int fd, int opt) {
  int v = 0;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0) {
    return -1;
  }
  return v;
}

}  // namespace

Status SendBudget::reserve(int fd, size_t bytes, bool isDefault) {
  auto [it, fresh] = rooms_.try_emplace(fd);
  Room& r = it->second;
  if (fresh && isDefault && default_ != 0) {
    r.sndbuf = default_;
  } else if (fresh) {
    int v = getInt(fd, SO_SNDBUF);
    if (v < 0) {
      return failSys("getsockopt(SO_SNDBUF)");
    }
    r.sndbuf = static_cast<size_t>(v);
  }
  // An skb's truesize: its data (in whole pages when large) and its head, under 1 KiB.
  constexpr size_t kPage = 4096, kSkbHead = 1024;
  r.used += (bytes + kPage - 1) / kPage * kPage + kSkbHead;
  if (r.used <= r.sndbuf) {
    return {};
  }
  // Twice what is needed and a margin: a queue of many messages grows it a few times only.
  size_t want = r.used * 2 + (1u << 20);
  CRPIPE_TRY(setInt(fd, SO_SNDBUFFORCE, static_cast<int>(want / 2), "SO_SNDBUFFORCE"));
  r.sndbuf = want;  // the kernel doubles what is set
  grew_.insert(fd);
  return {};
}

Result<images::SkOptsEntry> freshUnixOpts(int type) {
  UniqueFd fd(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  if (!fd.valid()) {
    return failSys("socket(AF_UNIX, " + std::to_string(type) + ") for its default options");
  }
  images::SkOptsEntry o;
  o.set_so_sndbuf(static_cast<uint32_t>(getInt(fd.get(), SO_SNDBUF)));
  o.set_so_rcvbuf(static_cast<uint32_t>(getInt(fd.get(), SO_RCVBUF)));
  o.set_so_snd_tmo_sec(0);
  o.set_so_snd_tmo_usec(0);
  o.set_so_rcv_tmo_sec(0);
  o.set_so_rcv_tmo_usec(0);
  o.set_so_passcred(getInt(fd.get(), SO_PASSCRED) != 0);
  o.set_so_passsec(getInt(fd.get(), SO_PASSSEC) != 0);
  o.set_so_priority(static_cast<uint32_t>(getInt(fd.get(), SO_PRIORITY)));
  o.set_so_rcvlowat(static_cast<uint32_t>(getInt(fd.get(), SO_RCVLOWAT)));
  o.set_so_mark(static_cast<uint32_t>(getInt(fd.get(), SO_MARK)));
  o.set_so_keepalive(getInt(fd.get(), SO_KEEPALIVE) != 0);
  o.set_reuseaddr(getInt(fd.get(), SO_REUSEADDR) != 0);
  o.set_so_buf_lock(0);
  return o;
}

Status applyUnixOpts(int fd, const images::UnixSkEntry& e, const images::SkOptsEntry& fresh,
                     bool sndbufKnown) {
  const auto& o = e.opts();
  // Setting a size locks it (SOCK_SNDBUF_LOCK); SO_BUF_LOCK below puts the recorded bits
  // back whenever a size was set. The send buffer may have grown for the refill.
  bool sizeSet = false;
  const bool sndbufFresh = sndbufKnown && o.so_sndbuf() == fresh.so_sndbuf();
  if (o.so_sndbuf() != 0 && !sndbufFresh &&
      static_cast<uint32_t>(getInt(fd, SO_SNDBUF)) != o.so_sndbuf()) {
    CRPIPE_TRY(setInt(fd, SO_SNDBUFFORCE, static_cast<int>(o.so_sndbuf() / 2), "SO_SNDBUFFORCE"));
    sizeSet = true;
  }
  if (o.so_rcvbuf() != 0 && o.so_rcvbuf() != fresh.so_rcvbuf()) {
    CRPIPE_TRY(setInt(fd, SO_RCVBUFFORCE, static_cast<int>(o.so_rcvbuf() / 2), "SO_RCVBUFFORCE"));
    sizeSet = true;
  }
  if (o.so_snd_tmo_sec() != 0 || o.so_snd_tmo_usec() != 0) {
    CRPIPE_TRY(setTimeout(fd, SO_SNDTIMEO, o.so_snd_tmo_sec(), o.so_snd_tmo_usec(), "SO_SNDTIMEO"));
  }
  if (o.so_rcv_tmo_sec() != 0 || o.so_rcv_tmo_usec() != 0) {
    CRPIPE_TRY(setTimeout(fd, SO_RCVTIMEO, o.so_rcv_tmo_sec(), o.so_rcv_tmo_usec(), "SO_RCVTIMEO"));
  }
  if (o.has_so_passcred() && o.so_passcred() != fresh.so_passcred()) {
    CRPIPE_TRY(setInt(fd, SO_PASSCRED, o.so_passcred() ? 1 : 0, "SO_PASSCRED"));
  }
  if (o.has_so_passsec() && o.so_passsec() != fresh.so_passsec()) {
    CRPIPE_TRY(setInt(fd, SO_PASSSEC, o.so_passsec() ? 1 : 0, "SO_PASSSEC"));
  }
  if (o.has_so_priority() && o.so_priority() != fresh.so_priority()) {
    CRPIPE_TRY(setInt(fd, SO_PRIORITY, static_cast<int>(o.so_priority()), "SO_PRIORITY"));
  }
  if (o.has_so_rcvlowat() && o.so_rcvlowat() != fresh.so_rcvlowat()) {
    CRPIPE_TRY(setInt(fd, SO_RCVLOWAT, static_cast<int>(o.so_rcvlowat()), "SO_RCVLOWAT"));
  }
  if (o.has_so_mark() && o.so_mark() != fresh.so_mark()) {
    CRPIPE_TRY(setInt(fd, SO_MARK, static_cast<int>(o.so_mark()), "SO_MARK"));
  }
  if (o.has_so_keepalive() && o.so_keepalive() != fresh.so_keepalive()) {
    CRPIPE_TRY(setInt(fd, SO_KEEPALIVE, o.so_keepalive() ? 1 : 0, "SO_KEEPALIVE"));
  }
  if (o.has_reuseaddr() && o.reuseaddr() != fresh.reuseaddr()) {
    CRPIPE_TRY(setInt(fd, SO_REUSEADDR, o.reuseaddr() ? 1 : 0, "SO_REUSEADDR"));
  }
  if (o.has_so_linger()) {
    linger lg{1, static_cast<int>(o.so_linger())};
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0) {
      return failSys("setsockopt(SO_LINGER)");
    }
  }
  if (!o.so_bound_dev().empty()) {
    if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o.so_bound_dev().data(),
                     static_cast<socklen_t>(o.so_bound_dev().size())) < 0) {
      return failSys("setsockopt(SO_BINDTODEVICE, " + o.so_bound_dev() + ")");
    }
  }
  if (o.so_filter_size() > 0) {
    std::vector<sock_filter> prog;
    for (uint64_t v : o.so_filter()) {
      prog.push_back(sock_filter{static_cast<uint16_t>(v & 0xffff),
                                 static_cast<uint8_t>((v >> 16) & 0xff),
                                 static_cast<uint8_t>((v >> 24) & 0xff),
                                 static_cast<uint32_t>(v >> 32)});
    }
    sock_fprog fp{static_cast<unsigned short>(prog.size()), prog.data()};
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)) < 0) {
      return failSys("setsockopt(SO_ATTACH_FILTER)");
    }
  }
  if ((sizeSet && o.has_so_buf_lock()) || o.so_buf_lock() != 0) {
    CRPIPE_TRY(setInt(fd, SO_BUF_LOCK, static_cast<int>(o.so_buf_lock()), "SO_BUF_LOCK"));
  }
  const auto& x = e.crpipe();
  if (x.has_peek_off() && x.peek_off() >= 0) {
    CRPIPE_TRY(setInt(fd, SO_PEEK_OFF, x.peek_off(), "SO_PEEK_OFF"));
  }
  return {};
}

}  // namespace crpipe::restorer
