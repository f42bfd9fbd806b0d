// The collector's page batches lent to a pipe stream (vmsplice): a batch buffer still in
// the pipe is never written again (the buffer gets new pages), and one the reader has
// taken is reused as it is.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "collector/task/page_writer.h"
#include "common/image_stream.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"

namespace crpipe::collector::task {
namespace {

struct PipeStream {
  UniqueFd reader, writer;
  PipeStream() {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    reader.reset(p[0]);
    writer.reset(p[1]);
    // Room for a whole batch, so that lending does not wait for a reader.
    if (::fcntl(p[1], F_SETPIPE_SZ, 16 << 20) < 0) {
      (void)::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    }
  }
};

TEST(PageLend, ABufferStillInThePipeGetsNewPages) {
  PipeStream s;
  if (::fcntl(s.writer.get(), F_GETPIPE_SZ) < static_cast<int>(256 << 10)) {
    GTEST_SKIP() << "pipe too small";
  }
  StageWriter w(s.writer.get());
  ImageEmitter out(w);
  auto img = out.image("pages-1.img");
  ASSERT_TRUE(img);
  PageWriter::Slot slot;
  auto a = slot.take(out, 1 << 20);
  ASSERT_TRUE(a);
  const size_t len = 128 << 10;  // fits the pipe: nobody reads it yet
  std::memset(*a, 'A', len);
  ASSERT_TRUE(out.pages(*img, std::string_view(*a, len), /*lend=*/true));
  slot.lentUntil = out.streamBytes();
  // Not read yet: taking the slot again must not hand out the lent pages (new pages, at
  // whatever address: zeroes, not the A's).
  auto b = slot.take(out, 1 << 20);
  ASSERT_TRUE(b);
  EXPECT_EQ((*b)[0], '\0');
  std::memset(*b, 'B', len);
  // The pipe still has the first batch's bytes, unchanged.
  std::string all(out.streamBytes(), '\0');
  ASSERT_EQ(::read(s.reader.get(), all.data(), all.size()), static_cast<ssize_t>(all.size()));
  EXPECT_EQ(all.substr(all.size() - len), std::string(len, 'A'));
  // Now taken: lent again and read, the slot keeps its pages.
  ASSERT_TRUE(out.pages(*img, std::string_view(*b, len), /*lend=*/true));
  slot.lentUntil = out.streamBytes();
  std::string again(out.streamBytes() - all.size(), '\0');
  ASSERT_EQ(::read(s.reader.get(), again.data(), again.size()),
            static_cast<ssize_t>(again.size()));
  EXPECT_EQ(again.substr(again.size() - len), std::string(len, 'B'));
  auto c = slot.take(out, 1 << 20);
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)[0], 'B') << "a buffer the reader has taken keeps its pages";
}

TEST(PageLend, BatchesAreTwiceThePipe) {
  PipeStream s;
  ASSERT_GE(::fcntl(s.writer.get(), F_SETPIPE_SZ, 1 << 20), 0);
  {
    StageWriter w(s.writer.get());
    ImageEmitter out(w);
    EXPECT_EQ(out.pipeCapacity(), size_t{1} << 20);
    EXPECT_EQ(PageWriter::batchBytesFor(out), size_t{2} << 20);
  }
  ASSERT_GE(::fcntl(s.writer.get(), F_SETPIPE_SZ, 64 << 10), 0);
  {
    StageWriter w(s.writer.get());
    ImageEmitter out(w);
    EXPECT_EQ(PageWriter::batchBytesFor(out), size_t{1} << 20) << "at least 1 MiB";
  }
  char path[] = "/tmp/crpipe-page-lend-XXXXXX";
  UniqueFd file(::mkstemp(path));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  StageWriter w(file.get());
  ImageEmitter out(w);
  EXPECT_EQ(out.pipeCapacity(), 0u);
  EXPECT_EQ(PageWriter::batchBytesFor(out), PageWriter::kMaxBatchBytes) << "a file: no pipe";
}

}  // namespace
}  // namespace crpipe::collector::task
