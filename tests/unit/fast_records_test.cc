// The fast path's record parser (collector/fast/fast_records.cc) on canned iterator output.
#include "collector/fast/fast_records.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace crpipe::collector {
namespace {

template <typename T>
void put(std::string& out, const T& rec) {
  out.append(reinterpret_cast<const char*>(&rec), sizeof rec);
}

crp_fast_fd fdRec(uint32_t fd, uint64_t ino) {
  crp_fast_fd r{};
  r.type = CRP_FAST_FD;
  r.size = sizeof r;
  r.pid = 300;
  r.fd = fd;
  r.ino = ino;
  r.flags = CRP_FD_SOCKET | CRP_FD_CLOEXEC;
  r.sk_family = 1;
  return r;
}

crp_fast_usk uskRec(uint32_t ino, uint32_t nskbs, uint32_t bytes, bool queue) {
  crp_fast_usk r{};
  r.type = CRP_FAST_USK;
  r.size = sizeof r;
  r.ino = ino;
  r.flags = queue ? CRP_USK_QUEUE : 0;
  r.queue_why = queue ? CRP_QW_NONE : CRP_QW_RIGHTS;
  r.nskbs = nskbs;
  r.qbytes = bytes;
  return r;
}

void putSkb(std::string& out, uint32_t ino, const std::string& data, uint32_t flags,
            const std::string& addr = "") {
  crp_fast_skb r{};
  r.type = CRP_FAST_SKB;
  r.size = sizeof r;
  r.ino = ino;
  r.len = static_cast<uint32_t>(data.size());
  r.flags = flags | (addr.empty() ? 0 : CRP_SKB_ADDR);
  r.pid = 42;
  r.addr_len = static_cast<uint32_t>(addr.size());
  std::memcpy(r.addr, addr.data(), addr.size());
  put(out, r);
  out += data;
}

void putEnd(std::string& out, uint32_t ino, bool ok) {
  crp_fast_end e{};
  e.type = CRP_FAST_END;
  e.size = sizeof e;
  e.ino = ino;
  e.ok = ok ? 1 : 0;
  put(out, e);
}

TEST(FastRecords, FdsSocketsAndQueuesAtAnyAlignment) {
  std::string out;
  put(out, fdRec(3, 1000));
  put(out, uskRec(1000, 2, 5, true));
  putSkb(out, 1000, "abc", CRP_SKB_CREDS);  // 3 bytes: the next record is unaligned
  putSkb(out, 1000, "de", CRP_SKB_CREDS | CRP_SKB_SAME, std::string("\0xy", 3));
  putEnd(out, 1000, true);
  put(out, fdRec(4, 1001));
  put(out, uskRec(1001, 0, 0, false));  // not read: no SKB or END records follow
  put(out, fdRec(5, 1002));
  put(out, uskRec(1002, 0, 0, true));  // an empty queue, read
  putEnd(out, 1002, true);

  std::vector<FastFd> fds;
  std::unordered_map<uint32_t, FastUnix> socks;
  ASSERT_TRUE(parseFastRecords(out, fds, socks).has_value());
  ASSERT_EQ(fds.size(), 3u);
  EXPECT_EQ(fds[1].fd, 4u);
  ASSERT_EQ(socks.size(), 3u);
  const FastUnix& a = socks.at(1000);
  EXPECT_TRUE(a.queueRead);
  ASSERT_EQ(a.skbs.size(), 2u);
  EXPECT_EQ(a.skbs[0].data, "abc");
  EXPECT_EQ(a.skbs[1].data, "de");
  EXPECT_EQ(a.skbs[1].addr, std::string("\0xy", 3));
  EXPECT_EQ(a.skbs[1].pid, 42u);
  EXPECT_FALSE(socks.at(1001).queueRead);
  EXPECT_TRUE(socks.at(1002).queueRead);
  EXPECT_TRUE(socks.at(1002).skbs.empty());
}

TEST(FastRecords, AFailedQueueIsDropped) {
  std::string out;
  put(out, uskRec(7, 1, 2, true));
  putSkb(out, 7, std::string(2, '\0'), 0);  // padding after a failed read
  putEnd(out, 7, false);
  std::vector<FastFd> fds;
  std::unordered_map<uint32_t, FastUnix> socks;
  ASSERT_TRUE(parseFastRecords(out, fds, socks).has_value());
  EXPECT_FALSE(socks.at(7).queueRead);
  EXPECT_TRUE(socks.at(7).skbs.empty());
}

TEST(FastRecords, MalformedInputIsRefusedWithTheOffset) {
  std::string out;
  put(out, fdRec(3, 1));
  std::vector<FastFd> fds;
  std::unordered_map<uint32_t, FastUnix> socks;
  auto r = parseFastRecords(out.substr(0, out.size() - 1), fds, socks);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().str().find("offset 0"), std::string::npos);

  std::string bad;
  put(bad, uskRec(9, 1, 100, true));
  putSkb(bad, 9, "xy", 0);
  bad.resize(bad.size() - 1);  // data runs past the end
  fds.clear();
  socks.clear();
  EXPECT_FALSE(parseFastRecords(bad, fds, socks).has_value());

  std::string unknown;
  crp_fast_end e{};
  e.type = 99;
  e.size = sizeof e;
  put(unknown, e);
  auto u = parseFastRecords(unknown, fds, socks);
  ASSERT_FALSE(u.has_value());
  EXPECT_NE(u.error().str().find("unknown record type 99"), std::string::npos);
}

}  // namespace
}  // namespace crpipe::collector
