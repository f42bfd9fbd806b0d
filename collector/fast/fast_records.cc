#include "collector/fast/fast_records.h"

#include <cstddef>
#include <cstring>
#include <string>

namespace crpipe::collector {

namespace {

struct Cursor {
  std::string_view bytes;
  size_t pos = 0;

  std::string at() const { return "fast path records at offset " + std::to_string(pos); }

  // The type and size of the record at pos, checked against what `want` needs.
  Result<uint32_t> peekType() const {
    if (bytes.size() - pos < 8) {
      return failMsg(at() + ": truncated record header");
    }
    uint32_t hdr[2];
    std::memcpy(hdr, bytes.data() + pos, sizeof hdr);
    return hdr[0];
  }

  template <typename T>
  Result<const T*> take() {
    uint32_t hdr[2];
    if (bytes.size() - pos < sizeof hdr) {
      return failMsg(at() + ": truncated record header");
    }
    std::memcpy(hdr, bytes.data() + pos, sizeof hdr);
    if (hdr[1] != sizeof(T) || bytes.size() - pos < sizeof(T)) {
      return failMsg(at() + ": record of type " + std::to_string(hdr[0]) + " has size " +
                     std::to_string(hdr[1]) + ", expected " + std::to_string(sizeof(T)) +
                     " within " + std::to_string(bytes.size() - pos) + " bytes");
    }
    // Records follow data of any length, so they may sit at any alignment: callers read
    // them through copyOf() only.
    const T* r = reinterpret_cast<const T*>(bytes.data() + pos);
    pos += sizeof(T);
    return r;
  }
};

template <typename T>
T copyOf(const T* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

Status parseFastRecords(std::string_view bytes, std::vector<FastFd>& fds,
                        std::unordered_map<uint32_t, FastUnix>& sockets) {
  Cursor c{bytes};
  while (c.pos < bytes.size()) {
    auto type = c.peekType();
    if (!type) {
      return fail(std::move(type).error());
    }
    switch (*type) {
      case CRP_FAST_FD: {
        auto r = c.take<crp_fast_fd>();
        if (!r) {
          return fail(std::move(r).error());
        }
        fds.push_back(copyOf(*r));
        break;
      }
      case CRP_FAST_USK: {
        auto r = c.take<crp_fast_usk>();
        if (!r) {
          return fail(std::move(r).error());
        }
        FastUnix u;
        u.rec = copyOf(*r);
        if ((u.rec.flags & CRP_USK_QUEUE) != 0) {
          u.skbs.reserve(u.rec.nskbs);
          for (;;) {
            auto t = c.peekType();
            if (!t) {
              return fail(std::move(t).error().context("socket ino " + std::to_string(u.rec.ino)));
            }
            if (*t == CRP_FAST_END) {
              auto e = c.take<crp_fast_end>();
              if (!e) {
                return fail(std::move(e).error());
              }
              crp_fast_end end = copyOf(*e);
              if (end.ino != u.rec.ino) {
                return failMsg(c.at() + ": END of socket ino " + std::to_string(end.ino) +
                               " inside socket ino " + std::to_string(u.rec.ino));
              }
              u.queueRead = end.ok != 0 && u.skbs.size() == u.rec.nskbs;
              break;
            }
            if (*t != CRP_FAST_SKB) {
              return failMsg(c.at() + ": record type " + std::to_string(*t) +
                             " inside the queue of socket ino " + std::to_string(u.rec.ino));
            }
            auto s = c.take<crp_fast_skb>();
            if (!s) {
              return fail(std::move(s).error());
            }
            crp_fast_skb hdr = copyOf(*s);
            if (hdr.ino != u.rec.ino || hdr.addr_len > sizeof hdr.addr ||
                bytes.size() - c.pos < hdr.len) {
              return failMsg(c.at() + ": bad queue record of socket ino " +
                             std::to_string(u.rec.ino));
            }
            FastSkb skb;
            skb.flags = hdr.flags;
            skb.pid = hdr.pid;
            skb.uid = hdr.uid;
            skb.gid = hdr.gid;
            if ((hdr.flags & CRP_SKB_ADDR) != 0) {
              size_t at = c.pos - sizeof(crp_fast_skb) + offsetof(crp_fast_skb, addr);
              skb.addr = bytes.substr(at, hdr.addr_len);
            }
            skb.data = bytes.substr(c.pos, hdr.len);
            c.pos += hdr.len;
            u.skbs.push_back(skb);
          }
          if (!u.queueRead) {
            u.skbs.clear();
          }
        }
        uint32_t ino = u.rec.ino;
        sockets[ino] = std::move(u);
        break;
      }
      default:
        return failMsg(c.at() + ": unknown record type " + std::to_string(*type));
    }
  }
  return {};
}

}  // namespace crpipe::collector
