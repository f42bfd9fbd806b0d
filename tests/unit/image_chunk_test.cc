// ImageChunk framing: many entries (with the data that follows them) travel in one stream
// message laid out as the image file stores them. The emitter gathers them, the sink
// writes them as they are after checking the framing inside, and a chunk that is cut or
// lies about what it holds is refused with the stream's name and the message's offset.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "common/image_format.h"
#include "common/image_stream.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"
#include "protos/inventory.pb.h"
#include "protos/sk_unix.pb.h"
#include "tests/unit/image_fixture.h"
#include "tests/unit/temp_dir.h"

namespace crpipe {
namespace {

UniqueFd memFile() { return UniqueFd(::memfd_create("stream", MFD_CLOEXEC)); }

ImageKind skQueues() { return *imageKindForFile("sk-queues.img"); }

std::string packet(uint32_t id, const std::string& data) {
  images::SkPacketEntry e;
  e.set_id_for(id);
  e.set_length(static_cast<uint32_t>(data.size()));
  return e.SerializeAsString();
}

// An entry as the image file frames it: its 4-byte little-endian length, then the bytes.
std::string framed(const std::string& payload) {
  auto len = static_cast<uint32_t>(payload.size());
  std::string out(4, '\0');
  std::memcpy(out.data(), &len, 4);
  return out + payload;
}

struct Seen {
  std::vector<std::string> entries;
  std::string raw;
};

Status feed(ImageFramer& f, std::string_view bytes, Seen& seen) {
  return f.feed(
      bytes,
      [&seen](std::string_view p) -> Status {
        seen.entries.emplace_back(p);
        return {};
      },
      [&seen](std::string_view r) -> Status {
        seen.raw.append(r);
        return {};
      });
}

TEST(ImageFramer, SplitsEntriesFromTheirDataAcrossPieces) {
  std::string body = framed(packet(1, "hello")) + "hello" + framed(packet(2, "")) +
                     framed(packet(3, "world!")) + "world!";
  for (size_t cut : {size_t{0}, size_t{body.size()}}) {
    ImageFramer f(skQueues());
    Seen seen;
    ASSERT_TRUE(feed(f, std::string_view(body).substr(0, cut), seen));
    ASSERT_TRUE(feed(f, std::string_view(body).substr(cut), seen));
    EXPECT_EQ(seen.entries.size(), 3u);
    EXPECT_EQ(seen.raw, "helloworld!");
    EXPECT_TRUE(f.complete());
  }
  // A piece may end inside an entry's data; the next piece (or raw bytes) go on with it.
  std::string first = framed(packet(1, "hello")) + "hel";
  ImageFramer f(skQueues());
  Seen seen;
  ASSERT_TRUE(feed(f, first, seen));
  EXPECT_FALSE(f.complete());
  EXPECT_EQ(f.owed(), 2u);
  ASSERT_TRUE(f.feedRaw(2));
  EXPECT_TRUE(f.complete());
}

TEST(ImageFramer, RefusesAnEntryCutByTheEndOfItsPiece) {
  std::string body = framed(packet(1, "")) + framed(packet(2, ""));
  ImageFramer f(skQueues());
  Seen seen;
  auto st = feed(f, std::string_view(body).substr(0, body.size() - 1), seen);
  ASSERT_FALSE(st);
  std::string at = "at byte " + std::to_string(framed(packet(1, "")).size());
  EXPECT_NE(st.error().str().find(at), std::string::npos) << st.error().str();
  ImageFramer g(skQueues());
  auto st2 = feed(g, "\x01\x00", seen);
  ASSERT_FALSE(st2);
  EXPECT_NE(st2.error().str().find("at byte 0: truncated entry length"), std::string::npos);
}

TEST(ImageFramer, RefusesRawBytesNoEntryAnnounced) {
  ImageFramer f(skQueues());
  Seen seen;
  ASSERT_TRUE(feed(f, framed(packet(1, "ab")), seen));
  EXPECT_FALSE(f.feedRaw(3));
  ImageFramer g(skQueues());
  auto st = g.feedRaw(1);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().str().find("no entry announced any"), std::string::npos);
  // An entry while the last one still owes data is refused too.
  ImageFramer h(skQueues());
  ASSERT_TRUE(h.feedEntry(packet(1, "abc")));
  EXPECT_FALSE(h.feedEntry(packet(2, "")));
}

// Emits `n` queued packets into sk-queues.img (and an inventory), returns the stream.
std::string emitPackets(int n, int* chunks) {
  UniqueFd fd = memFile();
  {
    StageWriter w(fd.get());
    ImageEmitter out(w);
    images::InventoryEntry inv;
    inv.set_img_version(kImagesVersion);
    EXPECT_TRUE(out.entryTo("inventory.img", inv));
    auto img = out.image("sk-queues.img");
    EXPECT_TRUE(img);
    std::string data(4096, 'q');
    for (int i = 0; i < n; ++i) {
      images::SkPacketEntry e;
      e.set_id_for(static_cast<uint32_t>(i));
      e.set_length(static_cast<uint32_t>(data.size()));
      EXPECT_TRUE(out.entry(*img, e));
      EXPECT_TRUE(out.raw(*img, data));
    }
    EXPECT_TRUE(out.end());
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  auto bytes = readAll(fd.get());
  EXPECT_TRUE(bytes);
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "s");
  *chunks = 0;
  for (;;) {
    auto m = r.next();
    EXPECT_TRUE(m);
    if (!m || !*m) {
      break;
    }
    EXPECT_FALSE((*m)->isEntry()) << "entries travel in chunks";
    if ((*m)->isChunk()) {
      ++*chunks;
    }
  }
  return *bytes;
}

Result<bool> sinkAll(const std::string& stream, int dirFd) {
  UniqueFd fd = memFile();
  EXPECT_TRUE(writeAll(fd.get(), stream));
  ::lseek(fd.get(), 0, SEEK_SET);
  StageReader r(fd.get(), "test-stream");
  ImageSink sink(dirFd);
  for (;;) {
    auto m = r.next();
    if (!m) {
      return fail(std::move(m).error());
    }
    if (!*m) {
      return false;
    }
    std::string where = r.name() + " at offset " + std::to_string(r.offset());
    auto done = sink.consume(**m, where, r);
    if (!done || *done) {
      return done;
    }
  }
}

TEST(ImageChunk, ManyEntriesGoInFewMessagesAndTheFileIsAsEntryByEntry) {
  int chunks = 0;
  std::string stream = emitPackets(200, &chunks);
  // 200 entries of ~4 KiB: a chunk per ~256 KiB, not a message per entry and its data.
  EXPECT_GE(chunks, 3);
  EXPECT_LE(chunks, 5);
  testing::TempDir dir;
  auto done = sinkAll(stream, dir.fd());
  ASSERT_TRUE(done) << done.error().str();
  ASSERT_TRUE(*done);
  std::string want(8, '\0');
  uint32_t head = kImgCommonMagic, magic = skQueues().magic;
  std::memcpy(want.data(), &head, 4);
  std::memcpy(want.data() + 4, &magic, 4);
  for (int i = 0; i < 200; ++i) {
    want += framed(packet(static_cast<uint32_t>(i), std::string(4096, 'q')));
    want += std::string(4096, 'q');
  }
  EXPECT_EQ(testing::slurp(dir.fd(), "sk-queues.img"), want);
}

// Rewrites the first chunk of sk-queues.img in `stream` with `edit` applied to it, and its End with
// `editEnd`.
template <typename Edit, typename EditEnd>
std::string editFirstChunk(const std::string& stream, Edit edit, uint64_t* chunkOffset,
                           EditEnd editEnd) {
  UniqueFd in = memFile();
  EXPECT_TRUE(writeAll(in.get(), stream));
  ::lseek(in.get(), 0, SEEK_SET);
  UniqueFd out = memFile();
  {
    StageReader r(in.get(), "s");
    StageWriter w(out.get());
    bool edited = false;
    for (;;) {
      auto m = r.next();
      EXPECT_TRUE(m);
      if (!m || !*m) {
        break;
      }
      capnp::MallocMessageBuilder mb;
      mb.setRoot(**m);
      if (!edited && (*m)->isChunk() && (*m)->getChunk().getImage() == 1) {  // sk-queues
        edited = true;
        *chunkOffset = w.bytesWritten();
        edit(mb.getRoot<proto::Message>().getChunk());
      }
      if ((*m)->isEnd()) {
        editEnd(mb.getRoot<proto::Message>().getEnd());
      }
      EXPECT_TRUE(w.write(mb));
    }
    EXPECT_TRUE(w.flush());
  }
  ::lseek(out.get(), 0, SEEK_SET);
  auto bytes = readAll(out.get());
  return bytes ? *bytes : std::string();
}

// Sinks `bad` and expects a refusal whose message has every one of `parts`.
void expectRefused(const std::string& bad, const std::vector<std::string>& parts) {
  testing::TempDir dir;
  auto done = sinkAll(bad, dir.fd());
  ASSERT_FALSE(done);
  for (const auto& part : parts) {
    EXPECT_NE(done.error().str().find(part), std::string::npos)
        << "no '" << part << "' in: " << done.error().str();
  }
}

// Replaces a chunk's bytes.
void setBytes(proto::ImageChunk::Builder c, const std::string& bytes) {
  c.setBytes(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
}

std::string bytesOf(proto::ImageChunk::Builder c) {
  auto b = c.getBytes();
  return std::string(reinterpret_cast<const char*>(b.begin()), b.size());
}

TEST(ImageChunk, AChunkThatLiesAboutItsCountsIsRefusedAtItsOffset) {
  int chunks = 0;
  std::string stream = emitPackets(3, &chunks);
  uint64_t at = 0;
  std::string bad = editFirstChunk(
      stream, [](proto::ImageChunk::Builder c) { c.setEntries(c.getEntries() + 1); }, &at,
      [](proto::End::Builder) {});
  expectRefused(bad, {"test-stream at offset " + std::to_string(at), "announces 4 entries"});
}

TEST(ImageChunk, AChunkCutInsideAnEntryIsRefusedAtItsOffset) {
  int chunks = 0;
  std::string stream = emitPackets(3, &chunks);
  uint64_t at = 0;
  std::string bad = editFirstChunk(
      stream,
      [](proto::ImageChunk::Builder c) {
        // Keep the first entry's length word and two bytes of its protobuf only.
        setBytes(c, bytesOf(c).substr(0, 6));
      },
      &at, [](proto::End::Builder) {});
  expectRefused(bad,
                {"test-stream at offset " + std::to_string(at), "sk-queues.img", "at byte 0"});
}

TEST(ImageChunk, AStreamThatEndsOwingAnEntrysDataIsRefused) {
  int chunks = 0;
  std::string stream = emitPackets(1, &chunks);
  uint64_t at = 0;
  // Drop the last 10 bytes of data, and say so, so that only the end can tell.
  std::string bad = editFirstChunk(
      stream,
      [](proto::ImageChunk::Builder c) {
        std::string all = bytesOf(c);
        c.setRawBytes(c.getRawBytes() - 10);
        setBytes(c, all.substr(0, all.size() - 10));
      },
      &at, [](proto::End::Builder e) { e.setRawBytes(e.getRawBytes() - 10); });
  expectRefused(bad, {"owing 10 bytes"});
}

}  // namespace
}  // namespace crpipe
