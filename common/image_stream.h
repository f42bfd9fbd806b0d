#pragma once

#include <google/protobuf/message_lite.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_format.h"
#include "common/result.h"
#include "common/stage_stream.h"

namespace crpipe {

// Puts image files onto a stage stream: ImageOpen once per file, then its entries and raw
// data in file order. Different files may interleave; each file's own order is kept.
// Entries and the data that follows them are gathered per file into ImageChunk messages
// of about kChunkBytes, laid out as the file stores them; a raw image's data (pages) goes
// in ImageRaw messages, after every chunk gathered so far, so entries still come before
// the pages they describe.
class ImageEmitter {
 public:
  static constexpr size_t kChunkBytes = 256 * 1024;

  explicit ImageEmitter(StageWriter& out) : out_(out) {}

  // The stream index of an image file, announcing it on first use.
  Result<uint32_t> image(const std::string& fileName);
  Status entry(uint32_t image, const google::protobuf::MessageLite& msg);
  Status entryBytes(uint32_t image, std::string_view payload);
  Status raw(uint32_t image, std::string_view data);
  // In place of raw(): the last entry's data stays in the image file, at `fileOffset`
  // (ImageChunk.dataAt; for a reader that has the image directory).
  Status dataAt(uint32_t image, uint64_t fileOffset);
  // The same bytes as raw(), as ImagePages messages: each followed by its bytes outside
  // Cap'n Proto framing, written from `data` itself. For page batches.
  // `lend`: where the stream is a pipe, `data`'s pages go into it by reference
  // (StageWriter::writeWithPayloadByReference): the caller leaves them unchanged until
  // consumedUpTo() reaches streamBytes() as it is on return.
  Status pages(uint32_t image, std::string_view data, bool lend = false);
  // The bytes of `ranges` of frozen task `pid`, named instead of sent (ImagePageRefs):
  // only to a serializer started with --page-refs on this host, which reads them itself.
  Status pageRefs(uint32_t image, pid_t pid, const std::vector<iovec>& ranges);
  uint64_t streamBytes() const { return out_.bytesWritten(); }
  Result<uint64_t> consumedUpTo() { return out_.consumedUpTo(); }
  // What the stream's pipe holds (F_GETPIPE_SZ); 0 where the stream is not a pipe.
  size_t pipeCapacity() const { return out_.pipeCapacity(); }
  // Convenience: entry into the named image.
  Status entryTo(const std::string& fileName, const google::protobuf::MessageLite& msg);
  // Sends every chunk gathered so far.
  Status flush();
  Status end();

  uint64_t entries() const { return entries_; }
  uint64_t rawBytes() const { return rawBytes_; }

 private:
  // What one image has gathered for its next ImageChunk.
  struct Pending {
    std::string bytes;
    uint32_t entries = 0;
    uint64_t rawBytes = 0;
    std::vector<uint64_t> dataAt;
    bool rawImage = false;  // pages-N.img: data only, sent as ImageRaw
  };

  Status flushChunk(uint32_t image);
  // Sends the image's chunk once it is big enough.
  Status maybeFlush(uint32_t image);
  Status rawMessages(uint32_t image, std::string_view data);

  StageWriter& out_;
  std::map<std::string, uint32_t, std::less<>> images_;
  std::vector<Pending> pending_;  // by image index
  uint64_t entries_ = 0;
  uint64_t rawBytes_ = 0;
};

class PageCopier;

// Writes image files from the stage stream messages (ImageOpen / entry / raw / end).
class ImageSink {
 public:
  explicit ImageSink(int dirFd) : dirFd_(dirFd) {}
  // Takes ImagePageRefs (the serializer's --page-refs): `copier` reads the named pages of
  // the frozen tasks into the files. Without it such a message is refused.
  void readPagesWith(PageCopier* copier) { copier_ = copier; }

  // Handles one message; returns true once End arrived and every file is synced. The
  // payload of an ImagePages message is spliced from `in` straight into the image file.
  Result<bool> consume(proto::Message::Reader msg, const std::string& where, StageReader& in);
  uint32_t imagesWritten() const { return static_cast<uint32_t>(names_.size()); }
  uint64_t bytesWritten() const { return bytes_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  // An image being written, and where its framing stands.
  struct Open {
    ImageWriter writer;
    ImageFramer framer;
  };

  Result<Open*> writer(uint32_t image, const std::string& where);

  int dirFd_;
  PageCopier* copier_ = nullptr;
  std::map<uint32_t, Open> writers_;
  std::vector<std::string> names_;
  uint64_t entries_ = 0;
  uint64_t rawBytes_ = 0;
  uint64_t bytes_ = 0;
};

// What emitImageDirectory leaves off the stream for a reader that has the directory
// itself (`crpipe run restore -D`), so that the bulk of a dump is not copied through a
// socket: raw images (pages-N.img: page contents, no entries), which the reader maps, and
// the data that follows entries (socket queues, pipe buffers), sent as file offsets
// (ImageChunk.dataAt).
struct EmitOptions {
  bool skipRawImages = false;
  bool dataRefs = false;
};

// Reads every image file of a directory in stream order (inventory first, then by name)
// and puts it on the stream, ending with End.
Status emitImageDirectory(int dirFd, const std::string& dirName, ImageEmitter& out,
                          EmitOptions opts = {});

}  // namespace crpipe
