#pragma once

#include <cstdint>
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
  std::vector<ImagePiece> pieces_;
};

class PagePrefaulter;

// A shared, writable mapping of a file that grows at its end (ImageWriter::reserve). The
// address range is reserved once, so addresses handed out stay valid while it grows.
class GrowingFileMap {
 public:
  GrowingFileMap() = default;
  GrowingFileMap(GrowingFileMap&& o) noexcept { *this = std::move(o); }
  GrowingFileMap& operator=(GrowingFileMap&& o) noexcept;
  ~GrowingFileMap() { reset(); }

  bool active() const { return base_ != nullptr; }
  char* base() const { return base_; }
  // Makes [0, size) of `fd` mapped (ftruncate, then mmap of the new part): false when the
  // reserved range is too small or the file system cannot map files (the caller writes).
  Result<bool> ensure(int fd, uint64_t size);
  void reset();

 private:
  char* base_ = nullptr;
  size_t reserved_ = 0;
  uint64_t mapped_ = 0;
};

// Appends to one image file. Buffered; errors name the file.
class ImageWriter {
 public:
  static Result<ImageWriter> create(int dirFd, const std::string& name, uint32_t headMagic,
                                    uint32_t magic);
  ImageWriter(ImageWriter&&) = default;
  ImageWriter& operator=(ImageWriter&&) = default;
  ~ImageWriter();

  Status writeEntry(std::string_view payload);
  Status writeRaw(std::string_view data);
  // Room for the next `len` bytes of the file, for the caller to fill (straight from a
  // stream) before commit(len). Large appends go through a shared mapping of the file, so
  // a payload is copied once, from the stream into the file's pages; `prefault`, if given,
  // faults those pages in on its own thread meanwhile. Elsewhere (a file system that cannot
  // map files) the room is a buffer that commit() writes.
  Result<char*> reserve(size_t len, PagePrefaulter* prefault = nullptr);
  Status commit(size_t len);
  // Flushes and fsyncs; the file is complete after this.
  Status finish();
  uint64_t bytesWritten() const { return written_; }
  const std::string& name() const { return name_; }

 private:
  ImageWriter(std::string name, UniqueFd fd) : name_(std::move(name)), fd_(std::move(fd)) {}
  Status flush();
  Status append(std::string_view data);
  // Unmaps the file, cuts it to the bytes written and goes on with write() after them.
  Status leaveMap();
  void stopPrefault();

  std::string name_;
  UniqueFd fd_;
  std::string buf_;
  uint64_t written_ = 0;
  GrowingFileMap map_;
  bool noMap_ = false;                 // mapping failed once: reserve() hands out scratch_
  std::string scratch_;
  PagePrefaulter* prefault_ = nullptr;  // running on the reserved room until commit()
};

// Writes all of `data` to fd, retrying short writes and EINTR.
Status writeAll(int fd, std::string_view data);
// Reads until EOF.
Result<std::string> readAll(int fd);

}  // namespace crpipe
