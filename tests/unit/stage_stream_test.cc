// Stream framing: messages survive a round trip, and a truncated or corrupt stream is
// refused with the stream's name and the byte offset of the message that is broken.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sys/socket.h>

#include <fcntl.h>

#include <cstring>
#include <thread>
#include <utility>

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

// A stream with page batches: hello, pages #3 (large: read past kj's buffer), pages #4
// (small: inside it), end. Returns the offsets of the four messages and the total length.
std::vector<uint64_t> writePagesSample(int fd, const std::string& big, const std::string& small) {
  std::vector<uint64_t> offsets;
  StageWriter w(fd);
  capnp::MallocMessageBuilder hello;
  hello.initRoot<proto::Message>().initHello().setRootPid(1);
  offsets.push_back(w.bytesWritten());
  EXPECT_TRUE(w.write(hello));
  for (auto [image, data] : {std::pair<uint32_t, const std::string*>{3, &big}, {4, &small}}) {
    capnp::MallocMessageBuilder mb;
    auto p = mb.initRoot<proto::Message>().initPages();
    p.setImage(image);
    p.setLength(data->size());
    offsets.push_back(w.bytesWritten());
    EXPECT_TRUE(w.writeWithPayload(mb, *data));
  }
  capnp::MallocMessageBuilder end;
  end.initRoot<proto::Message>().initEnd().setRawBytes(big.size() + small.size());
  offsets.push_back(w.bytesWritten());
  EXPECT_TRUE(w.write(end));
  EXPECT_TRUE(w.flush());
  offsets.push_back(w.bytesWritten());
  ::lseek(fd, 0, SEEK_SET);
  return offsets;
}

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>(seed + i * 7 + i / 4096);
  }
  return s;
}

TEST(StageStream, PagesPayloadFollowsItsMessage) {
  UniqueFd fd = memFile();
  const std::string big = pattern(300 << 10, 'a'), small = pattern(100, 'z');
  auto off = writePagesSample(fd.get(), big, small);
  StageReader r(fd.get(), "pages");
  ASSERT_TRUE(r.next());
  auto m = r.next();
  ASSERT_TRUE(m && *m);
  ASSERT_TRUE((*m)->isPages());
  EXPECT_EQ((*m)->getPages().getImage(), 3u);
  EXPECT_EQ(r.offset(), off[1]);
  EXPECT_EQ(r.payloadLeft(), big.size());
  // In two pieces: the first from what the reader had buffered, the rest from the fd.
  std::string got(big.size(), '\0');
  ASSERT_TRUE(r.readPayload(got.data(), 1000));
  ASSERT_TRUE(r.readPayload(got.data() + 1000, big.size() - 1000));
  EXPECT_EQ(got, big);
  EXPECT_EQ(r.payloadLeft(), 0u);
  EXPECT_FALSE(r.readPayload(got.data(), 1)) << "read past the payload";
  auto m2 = r.next();
  ASSERT_TRUE(m2 && *m2);
  EXPECT_EQ(r.offset(), off[2]);
  EXPECT_EQ(r.payloadLeft(), small.size());
  // Not taken: the next call skips it.
  auto e = r.next();
  ASSERT_TRUE(e && *e) << (e ? "" : e.error().message());
  EXPECT_TRUE((*e)->isEnd());
  EXPECT_EQ(r.offset(), off[3]);
  auto eof = r.next();
  ASSERT_TRUE(eof);
  EXPECT_FALSE(eof->has_value());
  EXPECT_EQ(r.offset(), off[4]);
}

// Splices every payload of a pages sample read from `fd` into a file; returns its bytes.
Result<std::string> splicePayloads(int fd, const std::string& name) {
  UniqueFd out(::memfd_create("out", MFD_CLOEXEC));
  StageReader r(fd, name);
  for (;;) {
    auto m = r.next();
    if (!m) {
      return fail(std::move(m).error());
    }
    if (!*m || (*m)->isEnd()) {
      break;
    }
    if ((*m)->isPages()) {
      // In two calls: the first may be served from what the reader had buffered.
      uint64_t len = r.payloadLeft();
      CRPIPE_TRY(r.splicePayload(out.get(), static_cast<size_t>(len / 3), "out"));
      CRPIPE_TRY(r.splicePayload(out.get(), static_cast<size_t>(len - len / 3), "out"));
    }
  }
  ::lseek(out.get(), 0, SEEK_SET);
  return readAll(out.get());
}

TEST(StageStream, PagesPayloadSplicedFromAFile) {
  UniqueFd fd = memFile();
  const std::string big = pattern(300 << 10, 'd'), small = pattern(100, 'w');
  writePagesSample(fd.get(), big, small);
  auto got = splicePayloads(fd.get(), "file");
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_TRUE(*got == big + small);
}

TEST(StageStream, PagesPayloadSplicedFromASocket) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd reader(sv[0]), writer(sv[1]);
  const std::string big = pattern(3 << 20, 'e'), small = pattern(100, 'v');
  // More than a socket buffer holds: written while the reader takes it.
  std::thread w([&]() {
    writePagesSample(writer.get(), big, small);
    writer.reset();
  });
  auto got = splicePayloads(reader.get(), "socket");
  w.join();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_TRUE(*got == big + small);
}

// A payload lent to a pipe (vmsplice) arrives as written, spliced straight into the file;
// the writer knows how far the reader has taken it (consumedUpTo) and so when the lent
// memory may change.
TEST(StageStream, LentPayloadOverAPipeSplicesIntoTheFile) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd reader(p[0]), writer(p[1]);
  const size_t len = 2 << 20;  // more than the pipe holds: lent while the reader takes it
  void* mem = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  const std::string want = pattern(len, 'L');
  std::memcpy(mem, want.data(), len);
  std::string got;
  std::thread r([&]() {
    auto g = splicePayloads(reader.get(), "pipe");
    got = g ? *g : std::string("error: ") + g.error().message();
  });
  {
    StageWriter w(writer.get());
    capnp::MallocMessageBuilder mb;
    auto pm = mb.initRoot<proto::Message>().initPages();
    pm.setImage(3);
    pm.setLength(len);
    ASSERT_TRUE(w.writeWithPayloadByReference(mb, std::string_view(static_cast<char*>(mem), len)));
    const uint64_t lentUntil = w.bytesWritten();
    capnp::MallocMessageBuilder end;
    end.initRoot<proto::Message>().initEnd();
    ASSERT_TRUE(w.write(end));
    ASSERT_TRUE(w.flush());
    r.join();
    auto read = w.consumedUpTo();
    ASSERT_TRUE(read);
    EXPECT_GE(*read, lentUntil) << "the reader took everything";
  }
  EXPECT_TRUE(got == want) << got.substr(0, 40);
  ::munmap(mem, len);
}

TEST(StageStream, ConsumedUpToCountsWhatThePipeStillHolds) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd reader(p[0]), writer(p[1]);
  StageWriter w(writer.get());
  void* mem = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  std::memset(mem, 'q', 8192);
  capnp::MallocMessageBuilder mb;
  auto pm = mb.initRoot<proto::Message>().initPages();
  pm.setImage(1);
  pm.setLength(8192);
  ASSERT_TRUE(w.writeWithPayloadByReference(mb, std::string_view(static_cast<char*>(mem), 8192)));
  auto before = w.consumedUpTo();
  ASSERT_TRUE(before);
  EXPECT_EQ(*before, 0u) << "nothing was read yet";
  std::string all(w.bytesWritten(), '\0');
  ASSERT_EQ(::read(reader.get(), all.data(), all.size()), static_cast<ssize_t>(all.size()));
  auto after = w.consumedUpTo();
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, w.bytesWritten());
  EXPECT_EQ(all.substr(all.size() - 8192), std::string(8192, 'q'));
  ::munmap(mem, 8192);
}

TEST(StageStream, SplicedPayloadCutNamesOffsets) {
  UniqueFd fd = memFile();
  const std::string big = pattern(300 << 10, 'f'), small = pattern(100, 'u');
  auto off = writePagesSample(fd.get(), big, small);
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(off[2] - 5000)), 0);
  auto got = splicePayloads(fd.get(), "spliced");
  ASSERT_FALSE(got);
  const std::string& msg = got.error().message();
  EXPECT_EQ(msg.rfind("spliced at offset ", 0), 0u) << msg;
  EXPECT_NE(msg.find("stream ends inside the payload of the message at offset " +
                     std::to_string(off[1])),
            std::string::npos)
      << msg;
}

TEST(StageStream, TruncatedInsidePagesPayloadNamesOffsets) {
  UniqueFd fd = memFile();
  const std::string big = pattern(300 << 10, 'b'), small = pattern(100, 'y');
  auto off = writePagesSample(fd.get(), big, small);
  const uint64_t payloadAt = off[2] - big.size();
  const uint64_t cut = payloadAt + 200000;
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(cut)), 0);
  StageReader r(fd.get(), "cut");
  ASSERT_TRUE(r.next());
  auto m = r.next();
  ASSERT_TRUE(m && *m);
  std::string got(big.size(), '\0');
  auto bad = r.readPayload(got.data(), got.size());
  ASSERT_FALSE(bad);
  const std::string& msg = bad.error().message();
  EXPECT_EQ(msg.rfind("cut at offset ", 0), 0u) << msg;
  EXPECT_NE(msg.find("inside the payload"), std::string::npos) << msg;
  EXPECT_NE(msg.find("message at offset " + std::to_string(off[1])), std::string::npos) << msg;
}

TEST(StageStream, TruncatedPagesPayloadRefusedWhenSkipped) {
  UniqueFd fd = memFile();
  const std::string big = pattern(300 << 10, 'c'), small = pattern(100, 'x');
  auto off = writePagesSample(fd.get(), big, small);
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(off[3] - 10)), 0);  // inside `small`
  StageReader r(fd.get(), "skip");
  ASSERT_TRUE(r.next());
  ASSERT_TRUE(r.next());
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("skip at offset " + std::to_string(off[2]) +
                                       ": stream ends inside the payload"),
            std::string::npos)
      << bad.error().message();
}

TEST(StageStream, OversizedPagesLengthRefused) {
  UniqueFd fd = memFile();
  uint64_t at = 0;
  {
    StageWriter w(fd.get());
    capnp::MallocMessageBuilder hello;
    hello.initRoot<proto::Message>().initHello();
    ASSERT_TRUE(w.write(hello));
    at = w.bytesWritten();
    capnp::MallocMessageBuilder mb;
    auto p = mb.initRoot<proto::Message>().initPages();
    p.setLength(kMaxPagesPayload + 1);
    ASSERT_TRUE(w.write(mb));  // the announced bytes never follow
    ASSERT_TRUE(w.flush());
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "huge");
  ASSERT_TRUE(r.next());
  auto bad = r.next();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("huge at offset " + std::to_string(at)),
            std::string::npos)
      << bad.error().message();
}

}  // namespace
}  // namespace crpipe
