#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe {

// CRIU's image file format, which crpipe writes so that CRIU's own tools decode it:
//   [head magic u32] [image magic u32] { [len u32 LE] [protobuf, len bytes] [trailing data] }*
// The inventory has no head magic; raw images (pages-N.img) have no magic at all.
// Some images carry raw bytes after an entry; the entry's own field says how many.

inline constexpr uint32_t kImgCommonMagic = 0x54564319;
inline constexpr uint32_t kImgServiceMagic = 0x55105940;
inline constexpr uint32_t kImagesVersion = 2;  // CRTOOLS_IMAGES_V1_1

enum class Trailing {
  None,
  PipeData,  // PipeDataEntry.bytes raw bytes follow the entry
  SkQueue,   // SkPacketEntry.length raw bytes follow the entry
};

struct ImageKind {
  std::string_view pattern;  // "files", "fdinfo-%u", "pages-%u"
  uint32_t headMagic;        // 0: none
  uint32_t magic;            // 0 with headMagic 0: raw image
  Trailing trailing;
  std::string_view protoType;  // full protobuf message name of each entry, "" for raw
};

// The image kinds crpipe knows, looked up by file name ("fdinfo-12.img" -> "fdinfo-%u").
const std::vector<ImageKind>& imageKinds();
std::optional<ImageKind> imageKindForFile(std::string_view fileName);
std::optional<ImageKind> imageKindForMagic(uint32_t headMagic, uint32_t magic);
// The file name for an image kind: imageFileName("fdinfo-%u", 12) -> "fdinfo-12.img".
std::string imageFileName(std::string_view pattern, uint64_t n = 0);

// How many raw bytes follow an entry of an image kind (0 for most kinds).
Result<uint64_t> trailingBytes(const ImageKind& kind, std::string_view payload);

// Follows the framing of one image file's body (what comes after its magic) as it arrives
// in pieces: runs of whole entries with their trailing data (a stream's ImageChunk), and
// raw bytes (ImageRaw). It tells entries from trailing data without holding the file, so
// a reader can check and split a chunk and know at the end whether the file is whole.
class ImageFramer {
 public:
  explicit ImageFramer(const ImageKind& kind)
      : kind_(kind), rawImage_(kind.magic == 0 && kind.headMagic == 0) {}

  // Walks `bytes`: onEntry(payload) for each entry, onRaw(data) for each run of trailing
  // data (which may continue an entry of an earlier piece, or go on in a later one). An
  // entry cut by the end of `bytes` is refused; errors name the byte offset in `bytes`.
  template <typename OnEntry, typename OnRaw>
  Status feed(std::string_view bytes, OnEntry&& onEntry, OnRaw&& onRaw);
  // Walks a chunk whose entries' data stayed in the image file (ImageChunk.dataAt):
  // onEntry(payload) for each entry, then onData(offset, length) for each entry that
  // announces data, taking `dataAt` in order; every offset must be used, and `bytes` must
  // hold entries only.
  template <typename Offsets, typename OnEntry, typename OnData>
  Status feedWithoutData(std::string_view bytes, const Offsets& dataAt, OnEntry&& onEntry,
                         OnData&& onData);
  // One entry that arrives on its own (an ImageEntry message).
  Status feedEntry(std::string_view payload);
  // Raw bytes that arrive on their own: a raw image's data, or an entry's trailing data.
  Status feedRaw(uint64_t size);
  // The file may end here: no entry still owes trailing data.
  bool complete() const { return owed_ == 0; }
  uint64_t owed() const { return owed_; }

 private:
  // The payload of the entry framed at `off` of `bytes`; a cut length word or entry is
  // refused, naming the byte.
  static Result<std::string_view> entryAt(std::string_view bytes, size_t off) {
    if (bytes.size() - off < 4) {
      return failMsg("at byte " + std::to_string(off) + ": truncated entry length");
    }
    uint32_t len;
    std::memcpy(&len, bytes.data() + off, 4);
    if (len > bytes.size() - off - 4) {
      return failMsg("at byte " + std::to_string(off) + ": entry of " + std::to_string(len) +
                     " bytes runs past the end of the piece (" + std::to_string(bytes.size()) +
                     " bytes)");
    }
    return bytes.substr(off + 4, len);
  }

  ImageKind kind_;
  bool rawImage_;
  uint64_t owed_ = 0;  // trailing bytes the last entry announced that have not come yet
};

// One decoded piece of an image file, in file order.
struct ImagePiece {
  enum class Type { Entry, Raw } type;
  uint64_t offset;        // byte offset of the piece (of the length word for an entry)
  std::string_view data;  // entry payload or raw bytes; points into the reader's buffer
};

// Reads a whole image file and splits it into pieces, refusing anything truncated or
// inconsistent with an error that names the file and the byte offset.
class ImageFile {
 public:
  static Result<ImageFile> load(int dirFd, const std::string& name);
  static Result<ImageFile> fromBytes(std::string name, std::string bytes);

  const std::string& name() const { return name_; }
  const ImageKind& kind() const { return kind_; }
  const std::vector<ImagePiece>& pieces() const { return pieces_; }

 private:
  Status parse();

  std::string name_;
  ImageKind kind_{};
  // On the heap so that pieces' views stay valid when the ImageFile moves: a moved
  // std::string of up to 15 bytes (small-string buffer) would leave them dangling.
  std::unique_ptr<const std::string> bytes_;
  // load(): the file mapped read-only instead (no copy of data a reader may never touch).
  std::shared_ptr<const void> mapping_;
  std::string_view data_;  // the file's bytes: *bytes_ or the mapping
  std::vector<ImagePiece> pieces_;
};

// Appends to one image file. Buffered; errors name the file.
class ImageWriter {
 public:
  static Result<ImageWriter> create(int dirFd, const std::string& name, uint32_t headMagic,
                                    uint32_t magic);
  ImageWriter(ImageWriter&&) = default;
  ImageWriter& operator=(ImageWriter&&) = default;

  Status writeEntry(std::string_view payload);
  Status writeRaw(std::string_view data);
  // Appends `len` bytes that `fill` writes to the file's fd, at its position (spliced
  // from a stream: StageReader::splicePayload), after whatever is buffered.
  Status appendFrom(size_t len, const std::function<Status(int, const std::string&)>& fill);
  // Appends `len` bytes that someone else writes later at the offset returned (pwrite to
  // fd()): the file position moves past them, so what follows lands after them.
  Result<uint64_t> reserve(size_t len);
  int fd() const { return fd_.get(); }
  // Flushes and closes; the file is complete after this. It is on disk once the caller
  // syncs its file system (ImageSink: one syncfs for every image, not an fsync each).
  Status finish();
  uint64_t bytesWritten() const { return written_; }
  const std::string& name() const { return name_; }

 private:
  ImageWriter(std::string name, UniqueFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}
  Status flush();
  Status append(std::string_view data);

  std::string name_;
  UniqueFd fd_;
  std::string buf_;
  uint64_t written_ = 0;
};

template <typename OnEntry, typename OnRaw>
Status ImageFramer::feed(std::string_view bytes, OnEntry&& onEntry, OnRaw&& onRaw) {
  size_t off = 0;
  while (off < bytes.size()) {
    if (rawImage_ || owed_ > 0) {
      size_t take = rawImage_ ? bytes.size() - off
                              : static_cast<size_t>(std::min<uint64_t>(owed_, bytes.size() - off));
      CRPIPE_TRY(onRaw(bytes.substr(off, take)));
      if (!rawImage_) {
        owed_ -= take;
      }
      off += take;
      continue;
    }
    auto payload = entryAt(bytes, off);
    if (!payload) {
      return fail(std::move(payload).error());
    }
    CRPIPE_TRY_CTX(feedEntry(*payload), "at byte " + std::to_string(off));
    CRPIPE_TRY(onEntry(*payload));
    off += 4 + payload->size();
  }
  return {};
}

template <typename Offsets, typename OnEntry, typename OnData>
Status ImageFramer::feedWithoutData(std::string_view bytes, const Offsets& dataAt,
                                    OnEntry&& onEntry, OnData&& onData) {
  if (rawImage_ || owed_ > 0) {
    return failMsg("entries without their data where raw data is due");
  }
  size_t next = 0;
  size_t off = 0;
  while (off < bytes.size()) {
    auto payload = entryAt(bytes, off);
    if (!payload) {
      return fail(std::move(payload).error());
    }
    CRPIPE_TRY_CTX(feedEntry(*payload), "at byte " + std::to_string(off));
    CRPIPE_TRY(onEntry(*payload));
    if (owed_ > 0) {
      if (next >= dataAt.size()) {
        return failMsg("at byte " + std::to_string(off) + ": an entry announces " +
                       std::to_string(owed_) + " bytes of data but the chunk gives " +
                       std::to_string(dataAt.size()) + " data offsets");
      }
      uint64_t length = owed_;
      owed_ = 0;
      CRPIPE_TRY(onData(static_cast<uint64_t>(dataAt[next++]), length));
    }
    off += 4 + payload->size();
  }
  if (next != dataAt.size()) {
    return failMsg("the chunk gives " + std::to_string(dataAt.size()) +
                   " data offsets for " + std::to_string(next) + " entries with data");
  }
  return {};
}

// Writes all of `data` to fd, retrying short writes and EINTR.
Status writeAll(int fd, std::string_view data);
// Reads until EOF.
Result<std::string> readAll(int fd);

}  // namespace crpipe
