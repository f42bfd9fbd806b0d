#include "common/image_stream.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/page_copier.h"
#include "common/unique_fd.h"

namespace crpipe {

namespace {
constexpr size_t kRawBatch = 1 << 20;

}  // namespace

Result<uint32_t> ImageEmitter::image(const std::string& fileName) {
  auto it = images_.find(fileName);
  if (it != images_.end()) {
    return it->second;
  }
  auto kind = imageKindForFile(fileName);
  if (!kind) {
    return failMsg("no image kind for file " + fileName);
  }
  uint32_t idx = static_cast<uint32_t>(images_.size());
  images_.emplace(fileName, idx);
  pending_.emplace_back().rawImage = kind->magic == 0 && kind->headMagic == 0;
  capnp::MallocMessageBuilder mb;
  auto o = mb.initRoot<proto::Message>().initImageOpen();
  o.setImage(idx);
  o.setName(fileName);
  o.setHeadMagic(kind->headMagic);
  o.setMagic(kind->magic);
  CRPIPE_TRY(out_.write(mb));
  return idx;
}

Status ImageEmitter::entry(uint32_t image, const google::protobuf::MessageLite& msg) {
  if (image >= pending_.size()) {
    return failMsg("entry for image #" + std::to_string(image) + ", which was never opened");
  }
  Pending& p = pending_[image];
  // The protobuf is serialized straight behind its length word in the chunk.
  size_t at = p.bytes.size();
  p.bytes.append(4, '\0');
  if (!msg.AppendToString(&p.bytes)) {
    p.bytes.resize(at);
    return failMsg("cannot serialize " + msg.GetTypeName() + " (a required field is unset)");
  }
  auto len = static_cast<uint32_t>(p.bytes.size() - at - 4);
  std::memcpy(p.bytes.data() + at, &len, 4);
  ++p.entries;
  ++entries_;
  return maybeFlush(image);
}

Status ImageEmitter::entryBytes(uint32_t image, std::string_view payload) {
  if (image >= pending_.size()) {
    return failMsg("entry for image #" + std::to_string(image) + ", which was never opened");
  }
  Pending& p = pending_[image];
  auto len = static_cast<uint32_t>(payload.size());
  char l[4];
  std::memcpy(l, &len, 4);
  p.bytes.append(l, 4);
  p.bytes.append(payload);
  ++p.entries;
  ++entries_;
  return maybeFlush(image);
}

Status ImageEmitter::raw(uint32_t image, std::string_view data) {
  if (image >= pending_.size()) {
    return failMsg("raw data for image #" + std::to_string(image) + ", which was never opened");
  }
  if (pending_[image].rawImage) {
    // Entries that describe these pages go first.
    CRPIPE_TRY(flush());
    return rawMessages(image, data);
  }
  // An entry's data: into the chunk, a batch at a time so that no chunk grows past
  // kChunkBytes + kRawBatch.
  if (!pending_[image].dataAt.empty()) {
    CRPIPE_TRY(flushChunk(image));
  }
  while (!data.empty()) {
    auto piece = data.substr(0, kRawBatch);
    Pending& p = pending_[image];
    p.bytes.append(piece);
    p.rawBytes += piece.size();
    rawBytes_ += piece.size();
    data.remove_prefix(piece.size());
    CRPIPE_TRY(maybeFlush(image));
  }
  return {};
}

Status ImageEmitter::dataAt(uint32_t image, uint64_t fileOffset) {
  if (image >= pending_.size() || pending_[image].rawImage) {
    return failMsg("data offset for image #" + std::to_string(image) +
                   ", which was never opened or holds no entries");
  }
  Pending& p = pending_[image];
  if (p.rawBytes != 0) {
    CRPIPE_TRY(flushChunk(image));  // a chunk has its data inline or as offsets, not both
  }
  p.dataAt.push_back(fileOffset);
  return {};
}

Status ImageEmitter::rawMessages(uint32_t image, std::string_view data) {
  while (!data.empty()) {
    auto chunk = data.substr(0, kRawBatch);
    auto bytes = kj::arrayPtr(reinterpret_cast<const kj::byte*>(chunk.data()), chunk.size());
    capnp::MallocMessageBuilder mb(16);
    auto r = mb.initRoot<proto::Message>().initRaw();
    r.setImage(image);
    if (reinterpret_cast<uintptr_t>(chunk.data()) % sizeof(capnp::word) == 0 &&
        chunk.size() % sizeof(capnp::word) == 0) {
      // Whole words (page batches): the message points at the caller's buffer, which is
      // written to the stream as it is, without a copy into the message first.
      r.adoptData(capnp::Orphanage::getForMessageContaining(r).referenceExternalData(
          capnp::Data::Reader(bytes)));
    } else {
      r.setData(bytes);
    }
    CRPIPE_TRY(out_.write(mb));
    rawBytes_ += chunk.size();
    data.remove_prefix(chunk.size());
  }
  return {};
}

Status ImageEmitter::maybeFlush(uint32_t image) {
  if (pending_[image].bytes.size() < kChunkBytes) {
    return {};
  }
  return flushChunk(image);
}

Status ImageEmitter::flushChunk(uint32_t image) {
  Pending& p = pending_[image];
  if (p.bytes.empty()) {
    return {};
  }
  size_t size = p.bytes.size();
  // The chunk's bytes are not copied into the message: it refers to them as an external
  // segment, which must be whole words, so the buffer gets zeroed padding up to the next
  // word (not part of the Data, whose length stays `size`).
  p.bytes.append((sizeof(capnp::word) - size % sizeof(capnp::word)) % sizeof(capnp::word), '\0');
  capnp::MallocMessageBuilder mb(16);
  auto c = mb.initRoot<proto::Message>().initChunk();
  c.setImage(image);
  c.setEntries(p.entries);
  c.setRawBytes(p.rawBytes);
  if (!p.dataAt.empty()) {
    auto at = c.initDataAt(static_cast<unsigned>(p.dataAt.size()));
    for (size_t i = 0; i < p.dataAt.size(); ++i) {
      at.set(static_cast<unsigned>(i), p.dataAt[i]);
    }
  }
  auto bytes = kj::arrayPtr(reinterpret_cast<const kj::byte*>(p.bytes.data()), size);
  if (reinterpret_cast<uintptr_t>(p.bytes.data()) % sizeof(capnp::word) == 0) {
    c.adoptBytes(capnp::Orphanage::getForMessageContaining(c).referenceExternalData(
        capnp::Data::Reader(bytes)));
  } else {
    c.setBytes(bytes);
  }
  CRPIPE_TRY(out_.write(mb));
  p.bytes.clear();
  p.entries = 0;
  p.rawBytes = 0;
  p.dataAt.clear();
  return {};
}

Status ImageEmitter::flush() {
  for (uint32_t i = 0; i < pending_.size(); ++i) {
    CRPIPE_TRY(flushChunk(i));
  }
  return {};
}

Status ImageEmitter::pages(uint32_t image, std::string_view data, bool lend) {
  // Entries gathered so far go first (the pagemap entries that describe these pages).
  CRPIPE_TRY(flush());
  while (!data.empty()) {
    auto chunk = data.substr(0, kMaxPagesPayload);
    capnp::MallocMessageBuilder mb(16);
    auto p = mb.initRoot<proto::Message>().initPages();
    p.setImage(image);
    p.setLength(chunk.size());
    CRPIPE_TRY(lend ? out_.writeWithPayloadByReference(mb, chunk)
                    : out_.writeWithPayload(mb, chunk));
    rawBytes_ += chunk.size();
    data.remove_prefix(chunk.size());
  }
  return {};
}

Status ImageEmitter::pageRefs(uint32_t image, pid_t pid, const std::vector<iovec>& ranges) {
  CRPIPE_TRY(flush());  // the pagemap entries that describe these pages go first
  capnp::MallocMessageBuilder mb;
  auto p = mb.initRoot<proto::Message>().initPageRefs();
  p.setImage(image);
  p.setPid(pid);
  auto list = p.initRanges(static_cast<unsigned>(ranges.size()));
  uint64_t bytes = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    list[i].setAddr(reinterpret_cast<uint64_t>(ranges[i].iov_base));
    list[i].setLength(ranges[i].iov_len);
    bytes += ranges[i].iov_len;
  }
  CRPIPE_TRY(out_.write(mb));
  rawBytes_ += bytes;
  // Sent now, not when the buffer fills: the reader copies these pages while the writer
  // goes on with the next task.
  return out_.flush();
}

Status ImageEmitter::entryTo(const std::string& fileName,
                             const google::protobuf::MessageLite& msg) {
  auto idx = image(fileName);
  if (!idx) {
    return fail(std::move(idx).error());
  }
  return entry(*idx, msg);
}

Status ImageEmitter::end() {
  CRPIPE_TRY(flush());
  capnp::MallocMessageBuilder mb;
  auto e = mb.initRoot<proto::Message>().initEnd();
  e.setImages(static_cast<uint32_t>(images_.size()));
  e.setEntries(entries_);
  e.setRawBytes(rawBytes_);
  CRPIPE_TRY(out_.write(mb));
  return out_.flush();
}

Result<ImageSink::Open*> ImageSink::writer(uint32_t image, const std::string& where) {
  auto it = writers_.find(image);
  if (it == writers_.end()) {
    return failMsg(where + ": data for image #" + std::to_string(image) +
                   " that the stream never opened");
  }
  return &it->second;
}

Result<bool> ImageSink::consume(proto::Message::Reader msg, const std::string& where,
                                StageReader& in) {
  switch (msg.which()) {
    case proto::Message::IMAGE_OPEN: {
      auto o = msg.getImageOpen();
      std::string name = o.getName();
      if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') {
        return failMsg(where + ": refusing image name '" + name + "'");
      }
      auto kind = imageKindForFile(name);
      if (!kind || kind->magic != o.getMagic() || kind->headMagic != o.getHeadMagic()) {
        return failMsg(where + ": image " + name + " has unexpected magic");
      }
      if (writers_.count(o.getImage()) != 0) {
        return failMsg(where + ": image #" + std::to_string(o.getImage()) + " opened twice");
      }
      auto w = ImageWriter::create(dirFd_, name, o.getHeadMagic(), o.getMagic());
      if (!w) {
        return fail(std::move(w).error());
      }
      writers_.emplace(o.getImage(), Open{std::move(*w), ImageFramer(*kind)});
      names_.push_back(name);
      return false;
    }
    case proto::Message::ENTRY: {
      auto e = msg.getEntry();
      auto w = writer(e.getImage(), where);
      if (!w) {
        return fail(std::move(w).error());
      }
      auto p = e.getPayload();
      std::string_view payload(reinterpret_cast<const char*>(p.begin()), p.size());
      CRPIPE_TRY_CTX((*w)->framer.feedEntry(payload), where + ": " + (*w)->writer.name());
      ++entries_;
      CRPIPE_TRY((*w)->writer.writeEntry(payload));
      return false;
    }
    case proto::Message::CHUNK: {
      auto c = msg.getChunk();
      auto w = writer(c.getImage(), where);
      if (!w) {
        return fail(std::move(w).error());
      }
      if (c.hasDataAt() && c.getDataAt().size() > 0) {
        return failMsg(where + ": chunk of " + (*w)->writer.name() +
                       " left its entries' data in the image directory it was read from "
                       "(serializer read --data-refs); it cannot be written as an image");
      }
      auto d = c.getBytes();
      std::string_view bytes(reinterpret_cast<const char*>(d.begin()), d.size());
      // The bytes go to the file as they are; the walk only checks that they are what the
      // chunk says: whole entries, each with the data its kind announces.
      uint64_t entries = 0, raw = 0;
      auto st = (*w)->framer.feed(
          bytes,
          [&entries](std::string_view) -> Status {
            ++entries;
            return {};
          },
          [&raw](std::string_view r) -> Status {
            raw += r.size();
            return {};
          });
      std::string ctx = where + ": chunk of " + (*w)->writer.name();
      if (!st) {
        return fail(std::move(st).error().context(ctx));
      }
      if (entries != c.getEntries() || raw != c.getRawBytes()) {
        return failMsg(ctx + " announces " + std::to_string(c.getEntries()) + " entries and " +
                       std::to_string(c.getRawBytes()) + " raw bytes but holds " +
                       std::to_string(entries) + " and " + std::to_string(raw));
      }
      entries_ += entries;
      rawBytes_ += raw;
      CRPIPE_TRY((*w)->writer.writeRaw(bytes));
      return false;
    }
    case proto::Message::RAW: {
      auto r = msg.getRaw();
      auto w = writer(r.getImage(), where);
      if (!w) {
        return fail(std::move(w).error());
      }
      auto d = r.getData();
      CRPIPE_TRY_CTX((*w)->framer.feedRaw(d.size()), where + ": " + (*w)->writer.name());
      rawBytes_ += d.size();
      CRPIPE_TRY((*w)->writer.writeRaw(
          std::string_view(reinterpret_cast<const char*>(d.begin()), d.size())));
      return false;
    }
    case proto::Message::PAGES: {
      auto p = msg.getPages();
      auto w = writer(p.getImage(), where);
      if (!w) {
        return fail(std::move(w).error());
      }
      // The reader has refused lengths over kMaxPagesPayload already.
      const size_t len = static_cast<size_t>(p.getLength());
      // Socket (or pipe, file) -> pipe -> image file: the bytes are copied once, by the
      // kernel, into the file's pages; the ImagePages framing exists for this.
      CRPIPE_TRY_CTX((*w)->framer.feedRaw(len), where + ": " + (*w)->writer.name());
      CRPIPE_TRY((*w)->writer.appendFrom(len, [&](int fd, const std::string& name) {
        return in.splicePayload(fd, len, name);
      }));
      rawBytes_ += len;
      return false;
    }
    case proto::Message::PAGE_REFS: {
      auto p = msg.getPageRefs();
      if (copier_ == nullptr) {
        return failMsg(where + ": the stream names pages of pid " + std::to_string(p.getPid()) +
                       " instead of carrying them (a collector started with --page-refs); "
                       "only a serializer that crpipe run dump starts beside it can read them");
      }
      auto w = writer(p.getImage(), where);
      if (!w) {
        return fail(std::move(w).error());
      }
      // Only the pages of a task the stream dumps: its pagemap image came first.
      const std::string pagemap = "pagemap-" + std::to_string(p.getPid()) + ".img";
      if (std::find(names_.begin(), names_.end(), pagemap) == names_.end()) {
        return failMsg(where + ": page references to pid " + std::to_string(p.getPid()) +
                       ", whose " + pagemap + " the stream has not opened");
      }
      std::vector<iovec> ranges;
      uint64_t len = 0;
      for (auto r : p.getRanges()) {
        if (r.getLength() > kMaxPagesPayload || len + r.getLength() > kMaxPagesPayload) {
          return failMsg(where + ": page references of more than " +
                         std::to_string(kMaxPagesPayload) + " bytes in one message");
        }
        ranges.push_back({reinterpret_cast<void*>(r.getAddr()), r.getLength()});
        len += r.getLength();
      }
      CRPIPE_TRY_CTX((*w)->framer.feedRaw(len), where + ": " + (*w)->writer.name());
      auto at = (*w)->writer.reserve(len);
      if (!at) {
        return fail(std::move(at).error());
      }
      CRPIPE_TRY(copier_->add(p.getPid(), ranges, (*w)->writer.fd(), *at,
                              "image " + (*w)->writer.name(), where));
      rawBytes_ += len;
      return false;
    }
    case proto::Message::END: {
      auto e = msg.getEnd();
      if (copier_ != nullptr) {
        CRPIPE_TRY(copier_->wait());  // every page in its file before the files close
        CRPIPE_TRY_CTX(copier_->checkStillFrozen(), where);
      }
      if (e.getImages() != writers_.size() || e.getEntries() != entries_ ||
          e.getRawBytes() != rawBytes_) {
        return failMsg(where + ": stream end announces " + std::to_string(e.getImages()) +
                       " images, " + std::to_string(e.getEntries()) + " entries, " +
                       std::to_string(e.getRawBytes()) + " raw bytes; received " +
                       std::to_string(writers_.size()) + ", " + std::to_string(entries_) +
                       ", " + std::to_string(rawBytes_));
      }
      for (auto& [idx, o] : writers_) {
        if (!o.framer.complete()) {
          return failMsg(where + ": stream ends with " + o.writer.name() + " owing " +
                         std::to_string(o.framer.owed()) + " bytes of an entry's data");
        }
      }
      for (auto& [idx, o] : writers_) {
        bytes_ += o.writer.bytesWritten();
        CRPIPE_TRY(o.writer.finish());
      }
      // One syncfs for every image and the directory: a dump of many tasks writes
      // hundreds of files, and an fsync each would commit the journal as many times.
      if (::syncfs(dirFd_) < 0) {
        return failSys("syncfs of the image directory");
      }
      return true;
    }
    case proto::Message::FAILURE:
      return failMsg(std::string(msg.getFailure().getMessage().cStr()));
    default:
      return false;  // hello, progress: nothing to write
  }
}

Status emitImageDirectory(int dirFd, const std::string& dirName, ImageEmitter& out,
                          EmitOptions opts) {
  UniqueFd dfd(::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) {
    return failSys("open image directory " + dirName);
  }
  DIR* d = ::fdopendir(dfd.get());
  if (d == nullptr) {
    return failSys("read image directory " + dirName);
  }
  (void)dfd.release();  // now owned by the DIR stream
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    auto kind = n.ends_with(".img") ? imageKindForFile(n) : std::nullopt;
    if (kind && !(opts.skipRawImages && kind->magic == 0 && kind->headMagic == 0)) {
      names.push_back(n);
    }
  }
  ::closedir(d);
  // Inventory first so a reader learns the dump's shape before anything else.
  std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
    bool ai = a == "inventory.img", bi = b == "inventory.img";
    if (ai != bi) {
      return ai;
    }
    return a < b;
  });
  if (names.empty() || names[0] != "inventory.img") {
    return failMsg(dirName + ": no inventory.img; not an image directory");
  }
  for (const auto& n : names) {
    auto f = ImageFile::load(dirFd, n);
    if (!f) {
      return fail(std::move(f).error().context(dirName));
    }
    auto idx = out.image(n);
    if (!idx) {
      return fail(std::move(idx).error());
    }
    for (const auto& p : f->pieces()) {
      if (p.type == ImagePiece::Type::Entry) {
        CRPIPE_TRY(out.entryBytes(*idx, p.data));
      } else if (f->kind().magic == 0 && f->kind().headMagic == 0) {
        CRPIPE_TRY(out.pages(*idx, p.data));  // page contents: outside capnp framing
      } else if (opts.dataRefs) {
        CRPIPE_TRY(out.dataAt(*idx, p.offset));
      } else {
        CRPIPE_TRY(out.raw(*idx, p.data));
      }
    }
  }
  return out.end();
}

}  // namespace crpipe
