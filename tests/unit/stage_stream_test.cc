// Stream framing: messages survive a round trip, and a truncated or corrupt stream is
// refused with the stream's name and the byte offset of the message that is broken.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/image_format.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"

namespace crpipe {
namespace {

UniqueFd memFile() { return UniqueFd(::memfd_create("stream", MFD_CLOEXEC)); }

// Writes three messages (hello, a progress and an end) and returns the offsets at which
// each begins, plus the total length.
std::vector<uint64_t> writeSample(int fd) {
  std::vector<uint64_t> offsets;
  StageWriter w(fd);
  {
    capnp::MallocMessageBuilder mb;
    auto h = mb.initRoot<proto::Message>().initHello();
    h.setRole(proto::Hello::Role::COLLECTOR);
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    h.setRootPid(42);
    offsets.push_back(w.bytesWritten());
    EXPECT_TRUE(w.write(mb));
  }
  {
    capnp::MallocMessageBuilder mb;
    auto p = mb.initRoot<proto::Message>().initProgress();
    p.setStep("sockets");
    p.setDone(7);
    p.setDetail(std::string(300, 'x'));
    offsets.push_back(w.bytesWritten());
    EXPECT_TRUE(w.write(mb));
  }
  {
    capnp::MallocMessageBuilder mb;
    mb.initRoot<proto::Message>().initEnd().setEntries(3);
    offsets.push_back(w.bytesWritten());
    EXPECT_TRUE(w.write(mb));
  }
  EXPECT_TRUE(w.flush());
  offsets.push_back(w.bytesWritten());
  ::lseek(fd, 0, SEEK_SET);
  return offsets;
}

TEST(StageStream, RoundTrip) {
  UniqueFd fd = memFile();
  auto off = writeSample(fd.get());
  StageReader r(fd.get(), "test-stream");
  auto m1 = r.next();
  ASSERT_TRUE(m1 && *m1);
  EXPECT_TRUE((*m1)->isHello());
  EXPECT_EQ((*m1)->getHello().getRootPid(), 42);
  EXPECT_EQ(r.offset(), off[0]);
  auto m2 = r.next();
  ASSERT_TRUE(m2 && *m2);
  EXPECT_EQ(std::string((*m2)->getProgress().getStep().cStr()), "sockets");
  EXPECT_EQ(r.offset(), off[1]);
  auto m3 = r.next();
  ASSERT_TRUE(m3 && *m3);
  EXPECT_EQ((*m3)->getEnd().getEntries(), 3u);
  auto eof = r.next();
  ASSERT_TRUE(eof);
  EXPECT_FALSE(eof->has_value());
  EXPECT_EQ(r.offset(), off[3]);
}

TEST(StageStream, TruncatedInsideMessageNamesOffset) {
  UniqueFd fd = memFile();
  auto off = writeSample(fd.get());
  // Cut the second message in half.
  uint64_t cut = off[1] + (off[2] - off[1]) / 2;
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(cut)), 0);
  StageReader r(fd.get(), "cut-stream");
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("cut-stream at offset " + std::to_string(off[1])),
            std::string::npos)
      << bad.error().message();
}

TEST(StageStream, TruncatedInsideSegmentTable) {
  UniqueFd fd = memFile();
  auto off = writeSample(fd.get());
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(off[2] + 3)), 0);
  StageReader r(fd.get(), "s");
  ASSERT_TRUE(r.next());
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("s at offset " + std::to_string(off[2])),
            std::string::npos)
      << bad.error().message();
}

TEST(StageStream, CorruptSegmentTableRefused) {
  UniqueFd fd = memFile();
  auto off = writeSample(fd.get());
  // Claim 2^31 segments in the second message.
  uint32_t huge = 0x7fffffff;
  ASSERT_EQ(::pwrite(fd.get(), &huge, 4, static_cast<off_t>(off[1])), 4);
  StageReader r(fd.get(), "corrupt");
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("corrupt at offset " + std::to_string(off[1])),
            std::string::npos)
      << bad.error().message();
}

TEST(StageStream, OversizedSegmentRefused) {
  UniqueFd fd = memFile();
  auto off = writeSample(fd.get());
  // One segment of 2^30 words: more than the stream holds and than the limits allow.
  uint32_t words = 1u << 30;
  ASSERT_EQ(::pwrite(fd.get(), &words, 4, static_cast<off_t>(off[1] + 4)), 4);
  StageReader r(fd.get(), "big");
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("big at offset " + std::to_string(off[1])),
            std::string::npos)
      << bad.error().message();
}

TEST(StageStream, GarbageRootRefusedNotCrashing) {
  UniqueFd fd = memFile();
  // A valid one-segment frame whose single word is a far pointer to nowhere.
  std::string bytes(16, '\0');
  uint32_t seg[2] = {0, 1};
  std::memcpy(bytes.data(), seg, 8);
  uint64_t ptr = 0xffffffff00000002ull;  // far pointer into segment 0xffffffff
  std::memcpy(bytes.data() + 8, &ptr, 8);
  ASSERT_TRUE(writeAll(fd.get(), bytes));
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "garbage");
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("garbage at offset 0"), std::string::npos)
      << bad.error().message();
}

TEST(StageStream, TruncatedInLaterSegmentRefusedAtItsOffset) {
  // A message of several segments (a tiny first segment forces more), cut inside its
  // last segment: refused at that message's offset, not a crash when it is dropped.
  UniqueFd fd = memFile();
  uint64_t start = 0, end = 0;
  {
    StageWriter w(fd.get());
    capnp::MallocMessageBuilder first;
    first.initRoot<proto::Message>().initEnd();
    ASSERT_TRUE(w.write(first));
    start = w.bytesWritten();
    capnp::MallocMessageBuilder mb(1, capnp::AllocationStrategy::FIXED_SIZE);
    auto e = mb.initRoot<proto::Message>().initEntry();
    e.setPayload(kj::heapArray<kj::byte>(4096).asPtr());
    ASSERT_GT(mb.getSegmentsForOutput().size(), 1u);
    ASSERT_TRUE(w.write(mb));
    ASSERT_TRUE(w.flush());
    end = w.bytesWritten();
  }
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(end - 100)), 0);
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "multi");
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("multi at offset " + std::to_string(start)),
            std::string::npos)
      << bad.error().message();
}

}  // namespace
}  // namespace crpipe
