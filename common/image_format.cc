#include "common/image_format.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "protos/pipe.pb.h"
#include "protos/sk_unix.pb.h"

namespace crpipe {

const std::vector<ImageKind>& imageKinds() {
  // Magic numbers are CRIU's (criu/include/magic.h), so crit recognises every file.
  static const std::vector<ImageKind> kinds = {
      {"inventory", 0, 0x58313116, Trailing::None, "crpipe.images.InventoryEntry"},
      {"pstree", kImgCommonMagic, 0x50273030, Trailing::None, "crpipe.images.PstreeEntry"},
      {"fdinfo-%u", kImgCommonMagic, 0x56213732, Trailing::None, "crpipe.images.FdinfoEntry"},
      {"files", kImgCommonMagic, 0x56303138, Trailing::None, "crpipe.images.FileEntry"},
      {"pipes-data", kImgCommonMagic, 0x56453709, Trailing::PipeData,
       "crpipe.images.PipeDataEntry"},
      {"fifo-data", kImgCommonMagic, 0x59333054, Trailing::PipeData,
       "crpipe.images.PipeDataEntry"},
      {"sk-queues", kImgCommonMagic, 0x56264026, Trailing::SkQueue,
       "crpipe.images.SkPacketEntry"},
      {"pages-%u", 0, 0, Trailing::None, ""},
      // task state (issue 4). pagemap-shmem-%u shares PAGEMAP_MAGIC with pagemap-%u; the
      // first entry of both is a PagemapHead (see protos/pagemap.proto).
      {"core-%u", kImgCommonMagic, 0x55053847, Trailing::None, "crpipe.images.CoreEntry"},
      {"mm-%u", kImgCommonMagic, 0x57492820, Trailing::None, "crpipe.images.MmEntry"},
      {"pagemap-%u", kImgCommonMagic, 0x56084025, Trailing::None,
       "crpipe.images.PagemapEntry"},
      {"pagemap-shmem-%u", kImgCommonMagic, 0x56084025, Trailing::None,
       "crpipe.images.PagemapEntry"},
      {"fs-%u", kImgCommonMagic, 0x51403912, Trailing::None, "crpipe.images.FsEntry"},
  };
  return kinds;
}

namespace {

// Matches "fdinfo-12.img" against "fdinfo-%u".
bool matchPattern(std::string_view pattern, std::string_view file) {
  if (!file.ends_with(".img")) {
    return false;
  }
  file.remove_suffix(4);
  auto pct = pattern.find("%u");
  if (pct == std::string_view::npos) {
    return file == pattern;
  }
  std::string_view prefix = pattern.substr(0, pct);
  if (!file.starts_with(prefix) || file.size() == prefix.size()) {
    return false;
  }
  for (char c : file.substr(prefix.size())) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

uint32_t le32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

std::string offsetCtx(const std::string& name, uint64_t off) {
  return name + " at offset " + std::to_string(off);
}

}  // namespace

std::optional<ImageKind> imageKindForFile(std::string_view fileName) {
  for (const auto& k : imageKinds()) {
    if (matchPattern(k.pattern, fileName)) {
      return k;
    }
  }
  return std::nullopt;
}

std::optional<ImageKind> imageKindForMagic(uint32_t headMagic, uint32_t magic) {
  for (const auto& k : imageKinds()) {
    if (k.magic != 0 && k.headMagic == headMagic && k.magic == magic) {
      return k;
    }
  }
  return std::nullopt;
}

std::string imageFileName(std::string_view pattern, uint64_t n) {
  std::string out(pattern);
  auto pct = out.find("%u");
  if (pct != std::string::npos) {
    out.replace(pct, 2, std::to_string(n));
  }
  return out + ".img";
}

Result<uint64_t> trailingBytes(const ImageKind& kind, std::string_view payload) {
  switch (kind.trailing) {
    case Trailing::None:
      return 0;
    case Trailing::PipeData: {
      images::PipeDataEntry e;
      if (!e.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return failMsg("undecodable PipeDataEntry");
      }
      return e.bytes();
    }
    case Trailing::SkQueue: {
      images::SkPacketEntry e;
      if (!e.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        return failMsg("undecodable SkPacketEntry");
      }
      return e.length();
    }
  }
  return 0;
}

Status ImageFramer::feedEntry(std::string_view payload) {
  if (rawImage_) {
    return failMsg("an entry in a raw image");
  }
  if (owed_ != 0) {
    return failMsg("an entry where the last one still owes " + std::to_string(owed_) +
                   " bytes of data");
  }
  auto extra = trailingBytes(kind_, payload);
  if (!extra) {
    return fail(std::move(extra).error());
  }
  owed_ = *extra;
  return {};
}

Status ImageFramer::feedRaw(uint64_t size) {
  if (rawImage_ || size == 0) {
    return {};
  }
  if (size > owed_) {
    return failMsg(std::to_string(size) + " raw bytes where " +
                   (owed_ == 0 ? std::string("no entry announced any")
                               : "the last entry announced " + std::to_string(owed_)));
  }
  owed_ -= size;
  return {};
}

Result<ImageFile> ImageFile::load(int dirFd, const std::string& name) {
  UniqueFd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return fail(Error::sys("open image " + name));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    const auto size = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p != MAP_FAILED) {
      ImageFile f;
      f.name_ = name;
      f.mapping_ = std::shared_ptr<const void>(p, [size](const void* q) {
        ::munmap(const_cast<void*>(q), size);
      });
      f.data_ = std::string_view(static_cast<const char*>(p), size);
      CRPIPE_TRY(f.parse());
      return f;
    }
  }
  // A file system that cannot map files: read it.
  auto bytes = readAll(fd.get());
  if (!bytes) {
    return fail(std::move(bytes).error().context("read image " + name));
  }
  return fromBytes(name, std::move(*bytes));
}

Result<ImageFile> ImageFile::fromBytes(std::string name, std::string bytes) {
  ImageFile f;
  f.name_ = std::move(name);
  f.bytes_ = std::make_unique<const std::string>(std::move(bytes));
  f.data_ = *f.bytes_;
  CRPIPE_TRY(f.parse());
  return f;
}

Status ImageFile::parse() {
  const std::string_view b = data_;
  auto byName = imageKindForFile(name_);
  uint64_t off = 0;
  if (byName && byName->magic == 0) {
    kind_ = *byName;  // raw image: the whole file is data
    if (!b.empty()) {
      pieces_.push_back({ImagePiece::Type::Raw, 0, std::string_view(b)});
    }
    return {};
  }
  if (b.size() < 4) {
    return failMsg(offsetCtx(name_, b.size()) + ": truncated image: no magic");
  }
  uint32_t first = le32(b.data());
  std::optional<ImageKind> kind;
  if (first == kImgCommonMagic || first == kImgServiceMagic) {
    if (b.size() < 8) {
      return failMsg(offsetCtx(name_, b.size()) + ": truncated image: no image magic");
    }
    kind = imageKindForMagic(first, le32(b.data() + 4));
    off = 8;
  } else {
    kind = imageKindForMagic(0, first);
    off = 4;
  }
  if (!kind) {
    return failMsg(offsetCtx(name_, 0) + ": unknown image magic");
  }
  if (byName && byName->magic != kind->magic) {
    return failMsg(offsetCtx(name_, 0) + ": magic does not match the file name");
  }
  kind_ = *kind;
  while (off < b.size()) {
    if (b.size() - off < 4) {
      return failMsg(offsetCtx(name_, off) + ": truncated entry length");
    }
    uint32_t len = le32(b.data() + off);
    if (len > b.size() - off - 4) {
      return failMsg(offsetCtx(name_, off) + ": entry of " + std::to_string(len) +
                     " bytes runs past the end of the file (" + std::to_string(b.size()) +
                     " bytes)");
    }
    std::string_view payload(b.data() + off + 4, len);
    pieces_.push_back({ImagePiece::Type::Entry, off, payload});
    auto extra = trailingBytes(kind_, payload);
    if (!extra) {
      return fail(std::move(extra).error().context(offsetCtx(name_, off)));
    }
    off += 4 + len;
    if (*extra > 0) {
      if (*extra > b.size() - off) {
        return failMsg(offsetCtx(name_, off) + ": entry announces " + std::to_string(*extra) +
                       " bytes of data but the file has " + std::to_string(b.size() - off));
      }
      pieces_.push_back({ImagePiece::Type::Raw, off, std::string_view(b.data() + off, *extra)});
      off += *extra;
    }
  }
  return {};
}

Result<ImageWriter> ImageWriter::create(int dirFd, const std::string& name, uint32_t headMagic,
                                        uint32_t magic) {
  UniqueFd fd(::openat(dirFd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    return fail(Error::sys("create image " + name));
  }
  ImageWriter w(name, std::move(fd));
  char hdr[8];
  size_t n = 0;
  if (headMagic != 0) {
    std::memcpy(hdr, &headMagic, 4);
    n += 4;
  }
  if (magic != 0 || headMagic != 0) {
    std::memcpy(hdr + n, &magic, 4);
    n += 4;
  }
  CRPIPE_TRY(w.append(std::string_view(hdr, n)));
  return w;
}

Status ImageWriter::appendFrom(size_t len,
                               const std::function<Status(int, const std::string&)>& fill) {
  CRPIPE_TRY(flush());
  CRPIPE_TRY(fill(fd_.get(), "image " + name_));
  written_ += len;
  return {};
}

Result<uint64_t> ImageWriter::reserve(size_t len) {
  CRPIPE_TRY(flush());
  const uint64_t at = written_;  // everything before is written: the file position
  if (::lseek(fd_.get(), static_cast<off_t>(len), SEEK_CUR) < 0) {
    return fail(Error::sys("seek in image " + name_));
  }
  written_ += len;
  return at;
}

Status ImageWriter::append(std::string_view data) {
  constexpr size_t kBufLimit = 1 << 20;
  // Large pieces (a stream's chunks, page batches) go to the file as they are: copying
  // them into the buffer first would only add a copy.
  constexpr size_t kDirect = 64 << 10;
  if (data.size() >= kDirect || buf_.size() + data.size() > kBufLimit) {
    CRPIPE_TRY(flush());
    if (data.size() >= kDirect) {
      CRPIPE_TRY_CTX(writeAll(fd_.get(), data), "write image " + name_);
      written_ += data.size();
      return {};
    }
  }
  buf_.append(data);
  written_ += data.size();
  return {};
}

Status ImageWriter::flush() {
  if (buf_.empty()) {
    return {};
  }
  CRPIPE_TRY_CTX(writeAll(fd_.get(), buf_), "write image " + name_);
  buf_.clear();
  return {};
}

Status ImageWriter::writeEntry(std::string_view payload) {
  uint32_t len = static_cast<uint32_t>(payload.size());
  char l[4];
  std::memcpy(l, &len, 4);
  CRPIPE_TRY(append(std::string_view(l, 4)));
  return append(payload);
}

Status ImageWriter::writeRaw(std::string_view data) { return append(data); }

Status ImageWriter::finish() {
  CRPIPE_TRY(flush());
  fd_.reset();
  return {};
}

Status writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return failSys("write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<std::string> readAll(int fd) {
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    out.reserve(static_cast<size_t>(st.st_size));
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return failSys("read");
    }
    if (n == 0) {
      return out;
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace crpipe
