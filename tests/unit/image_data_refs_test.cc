// `crpipe-serializer read --data-refs`: the data that follows entries (socket queues, pipe
// buffers) stays in the image file and travels as its offsets (ImageChunk.dataAt). The
// coordinator maps the file and finds every message's bytes where the offsets say; a file
// shorter than its entries' data, a chunk whose offsets do not match its entries, or such a
// stream given to the writer, is refused with the file or stream and the offset.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "common/image_format.h"
#include "common/image_stream.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"
#include "coordinator/restore_images.h"
#include "protos/inventory.pb.h"
#include "protos/sk_unix.pb.h"
#include "tests/unit/temp_dir.h"

namespace crpipe {
namespace {

// The bytes of the i-th queued packet.
std::string payload(int i) { return std::string(static_cast<size_t>(100 + i * 37), 'a' + i % 26); }

// An image directory with an inventory and `n` queued packets, the i-th holding
// payload(i).
void writeQueues(int dirFd, int n) {
  auto ik = *imageKindForFile("inventory.img");
  auto inv = ImageWriter::create(dirFd, "inventory.img", ik.headMagic, ik.magic);
  ASSERT_TRUE(inv);
  images::InventoryEntry ie;
  ie.set_img_version(kImagesVersion);
  ASSERT_TRUE(inv->writeEntry(ie.SerializeAsString()));
  ASSERT_TRUE(inv->finish());
  auto kind = *imageKindForFile("sk-queues.img");
  auto w = ImageWriter::create(dirFd, "sk-queues.img", kind.headMagic, kind.magic);
  ASSERT_TRUE(w);
  for (int i = 0; i < n; ++i) {
    images::SkPacketEntry e;
    e.set_id_for(static_cast<uint32_t>(i));
    e.set_length(static_cast<uint32_t>(payload(i).size()));
    ASSERT_TRUE(w->writeEntry(e.SerializeAsString()));
    ASSERT_TRUE(w->writeRaw(payload(i)));
  }
  ASSERT_TRUE(w->finish());
}

// The stream `crpipe-serializer read` makes of the directory.
std::string readDir(int dirFd, EmitOptions opts) {
  UniqueFd fd(::memfd_create("stream", MFD_CLOEXEC));
  {
    StageWriter w(fd.get());
    capnp::MallocMessageBuilder mb;
    auto h = mb.initRoot<proto::Message>().initHello();
    h.setRole(proto::Hello::Role::SERIALIZER);
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    EXPECT_TRUE(w.write(mb));
    ImageEmitter out(w);
    auto st = emitImageDirectory(dirFd, "dir", out, opts);
    EXPECT_TRUE(st) << st.error().str();
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  auto bytes = readAll(fd.get());
  EXPECT_TRUE(bytes);
  return bytes ? *bytes : std::string();
}

Status load(const std::string& stream, RestoreImages& images) {
  UniqueFd fd(::memfd_create("stream", MFD_CLOEXEC));
  CRPIPE_TRY(writeAll(fd.get(), stream));
  ::lseek(fd.get(), 0, SEEK_SET);
  return readRestoreImages(fd.get(), "test-stream", images);
}

TEST(ImageDataRefs, QueuedDataStaysInTheFileAndIsFoundByItsOffsets) {
  testing::TempDir dir;
  writeQueues(dir.fd(), 50);
  std::string refs = readDir(dir.fd(), {.skipRawImages = true, .dataRefs = true});
  std::string inline_ = readDir(dir.fd(), {});
  // The data (~48 KiB) is not on the stream; the entries are.
  EXPECT_LT(refs.size() + 40000, inline_.size());
  RestoreImages images;
  auto st = load(refs, images);
  ASSERT_TRUE(st) << st.error().str();
  ASSERT_TRUE(images.attachData(dir.path()));
  const auto& entries = images.entries("sk-queues.img");
  ASSERT_EQ(entries.size(), 50u);
  ASSERT_EQ(images.dataFiles(), 1u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(images.data(entries[static_cast<size_t>(i)]), payload(i)) << i;
  }
  // The restorer maps the same file through the coordinator's fd.
  struct stat st1 {}, st2 {};
  ASSERT_EQ(::fstat(images.dataFd(0), &st1), 0);
  ASSERT_EQ(::fstatat(dir.fd(), "sk-queues.img", &st2, 0), 0);
  EXPECT_EQ(st1.st_ino, st2.st_ino);
}

TEST(ImageDataRefs, StreamedDataIsKeptInAMemfdThatRestorersCanMap) {
  testing::TempDir dir;
  writeQueues(dir.fd(), 20);
  RestoreImages images;
  auto st = load(readDir(dir.fd(), {}), images);
  ASSERT_TRUE(st) << st.error().str();
  ASSERT_TRUE(images.attachData(""));
  const auto& entries = images.entries("sk-queues.img");
  ASSERT_EQ(entries.size(), 20u);
  ASSERT_EQ(images.dataFiles(), 1u);
  const int fd = images.dataFd(0);
  for (int i = 0; i < 20; ++i) {
    const auto& e = entries[static_cast<size_t>(i)];
    EXPECT_EQ(images.data(e), payload(i)) << i;
    std::string got(e.dataLen, '\0');
    ASSERT_EQ(::pread(fd, got.data(), got.size(), static_cast<off_t>(e.dataOffset)),
              static_cast<ssize_t>(got.size()));
    EXPECT_EQ(got, payload(i)) << i;
  }
}

TEST(ImageDataRefs, AFileShorterThanItsEntriesDataIsRefusedWithItsOffset) {
  testing::TempDir dir;
  writeQueues(dir.fd(), 10);
  std::string refs = readDir(dir.fd(), {.dataRefs = true});
  struct stat sb {};
  ASSERT_EQ(::fstatat(dir.fd(), "sk-queues.img", &sb, 0), 0);
  UniqueFd f(::openat(dir.fd(), "sk-queues.img", O_WRONLY | O_CLOEXEC));
  ASSERT_EQ(::ftruncate(f.get(), sb.st_size - 5), 0);
  RestoreImages images;
  ASSERT_TRUE(load(refs, images));
  auto st = images.attachData(dir.path());
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("sk-queues.img at offset " + std::to_string(sb.st_size - 5)),
            std::string::npos)
      << st.error().str();
  // Without a directory, a stream that left its data in one is refused too.
  RestoreImages noDir;
  ASSERT_TRUE(load(refs, noDir));
  auto st2 = noDir.attachData("");
  ASSERT_FALSE(st2);
  EXPECT_NE(st2.error().str().find("--data-refs"), std::string::npos) << st2.error().str();
}

TEST(ImageDataRefs, OffsetsThatDoNotMatchTheEntriesAreRefused) {
  auto kind = *imageKindForFile("sk-queues.img");
  images::SkPacketEntry e;
  e.set_id_for(1);
  e.set_length(10);
  std::string p = e.SerializeAsString();
  std::string bytes(4, '\0');
  auto len = static_cast<uint32_t>(p.size());
  std::memcpy(bytes.data(), &len, 4);
  bytes += p;
  auto none = [](std::string_view) -> Status { return {}; };
  auto data = [](uint64_t, uint64_t) -> Status { return {}; };
  ImageFramer a(kind);
  auto st = a.feedWithoutData(bytes, std::vector<uint64_t>{}, none, data);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("gives 0 data offsets"), std::string::npos) << st.error().str();
  ImageFramer b(kind);
  st = b.feedWithoutData(bytes, std::vector<uint64_t>{8, 40}, none, data);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("2 data offsets for 1 entries"), std::string::npos)
      << st.error().str();
  ImageFramer c(kind);
  uint64_t seenAt = 0, seenLen = 0;
  ASSERT_TRUE(c.feedWithoutData(bytes, std::vector<uint64_t>{8}, none,
                                [&](uint64_t at, uint64_t n) -> Status {
                                  seenAt = at;
                                  seenLen = n;
                                  return {};
                                }));
  EXPECT_EQ(seenAt, 8u);
  EXPECT_EQ(seenLen, 10u);
  EXPECT_TRUE(c.complete());
}

TEST(ImageDataRefs, TheWriterRefusesAStreamWhoseDataStayedElsewhere) {
  testing::TempDir src;
  writeQueues(src.fd(), 3);
  std::string refs = readDir(src.fd(), {.dataRefs = true});
  UniqueFd fd(::memfd_create("stream", MFD_CLOEXEC));
  ASSERT_TRUE(writeAll(fd.get(), refs));
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "test-stream");
  testing::TempDir out;
  ImageSink sink(out.fd());
  Status refused;
  for (;;) {
    auto m = r.next();
    ASSERT_TRUE(m);
    ASSERT_TRUE(*m) << "the stream ended without a refusal";
    auto done = sink.consume(**m, "test-stream at offset " + std::to_string(r.offset()), r);
    if (!done) {
      refused = fail(std::move(done).error());
      break;
    }
    ASSERT_FALSE(*done);
  }
  EXPECT_NE(refused.error().str().find("cannot be written as an image"), std::string::npos)
      << refused.error().str();
}

}  // namespace
}  // namespace crpipe
