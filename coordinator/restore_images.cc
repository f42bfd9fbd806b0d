#include "coordinator/restore_images.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/unique_fd.h"

#include "common/image_format.h"
#include "common/stage_stream.h"

namespace crpipe {

namespace {

// Fills `buf` from the start of the file (one that cannot be mapped).
Status readWhole(int fd, std::string& buf, const std::string& path) {
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t r = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return r < 0 ? failSys("read " + path) : failMsg(path + ": shorter than its size");
    }
    got += static_cast<size_t>(r);
  }
  return {};
}

}  // namespace

Result<bool> RestoreImages::consume(proto::Message::Reader msg, const std::string& where,
                                    StageReader& in) {
  switch (msg.which()) {
    case proto::Message::HELLO:
      if (msg.getHello().getProtocolVersion() != proto::PROTOCOL_VERSION) {
        return failMsg(where + ": stage protocol " +
                       std::to_string(msg.getHello().getProtocolVersion()) + ", crpipe speaks " +
                       std::to_string(proto::PROTOCOL_VERSION));
      }
      hello_ = true;
      return false;
    case proto::Message::IMAGE_OPEN: {
      auto o = msg.getImageOpen();
      std::string name = o.getName();
      names_[o.getImage()] = name;
      images_[name];
      if (auto kind = imageKindForFile(name)) {
        framers_.insert_or_assign(o.getImage(), ImageFramer(*kind));
      }
      return false;
    }
    case proto::Message::CHUNK: {
      CRPIPE_TRY(consumeChunk(msg.getChunk(), where));
      return false;
    }
    case proto::Message::ENTRY: {
      auto e = msg.getEntry();
      auto it = names_.find(e.getImage());
      if (it == names_.end()) {
        return failMsg(where + ": entry for image #" + std::to_string(e.getImage()) +
                       " that was never opened");
      }
      auto p = e.getPayload();
      std::string_view payload(reinterpret_cast<const char*>(p.begin()), p.size());
      // Entries may come one by one or in chunks: one framer follows both.
      if (auto fr = framers_.find(e.getImage()); fr != framers_.end()) {
        CRPIPE_TRY_CTX(fr->second.feedEntry(payload), where + ": " + it->second);
      }
      images_[it->second].push_back({std::string(payload)});
      ++entryCount_;
      return false;
    }
    case proto::Message::RAW: {
      auto r = msg.getRaw();
      auto d = r.getData();
      CRPIPE_TRY(appendRaw(r.getImage(), d.size(), where, [&](char* dst) -> Status {
        std::memcpy(dst, d.begin(), d.size());
        return {};
      }));
      return false;
    }
    case proto::Message::PAGES: {
      auto p = msg.getPages();
      // The reader has refused lengths over kMaxPagesPayload already.
      const size_t len = static_cast<size_t>(p.getLength());
      CRPIPE_TRY(appendRaw(p.getImage(), len, where,
                           [&](char* dst) { return in.readPayload(dst, len); }));
      return false;
    }
    case proto::Message::FAILURE:
      return failMsg(where + ": the stream ends with a failure: " +
                     std::string(msg.getFailure().getMessage().cStr()));
    case proto::Message::END: {
      auto e = msg.getEnd();
      if (e.getImages() != names_.size() || e.getEntries() != entryCount_ ||
          e.getRawBytes() != rawBytes_) {
        return failMsg(where + ": End counts (" + std::to_string(e.getImages()) + " images, " +
                       std::to_string(e.getEntries()) + " entries) do not match what came (" +
                       std::to_string(names_.size()) + ", " + std::to_string(entryCount_) + ")");
      }
      if (!hello_) {
        return failMsg(where + ": no Hello before End");
      }
      return true;
    }
    default:
      return failMsg(where + ": unexpected " + describeMessage(msg));
  }
}

Status RestoreImages::consumeChunk(proto::ImageChunk::Reader c, const std::string& where) {
  auto it = names_.find(c.getImage());
  auto fr = framers_.find(c.getImage());
  if (it == names_.end() || fr == framers_.end()) {
    return failMsg(where + ": chunk for image #" + std::to_string(c.getImage()) +
                   " that was never opened");
  }
  const std::string& name = it->second;
  auto& entries = images_[name];
  auto kind = imageKindForFile(name);
  const bool rawImage = kind && kind->magic == 0 && kind->headMagic == 0;
  auto d = c.getBytes();
  std::string_view bytes(reinterpret_cast<const char*>(d.begin()), d.size());
  uint64_t got = 0, raw = 0;
  auto onEntry = [&entries, &got](std::string_view payload) -> Status {
    entries.push_back({std::string(payload)});
    ++got;
    return {};
  };
  Status st;
  if (c.getDataAt().size() > 0) {
    // The data stayed in the image file: only where it is, checked once the file is open.
    st = fr->second.feedWithoutData(
        bytes, c.getDataAt(), onEntry,
        [this, &entries, &name](uint64_t offset, uint64_t length) -> Status {
          uint32_t index = 0;
          DataFile& f = dataFileOf(name, true, &index);
          if (offset > UINT64_MAX - length) {
            return failMsg("data at offset " + std::to_string(offset) + " of " +
                           std::to_string(length) + " bytes runs past any file");
          }
          f.end = std::max(f.end, offset + length);
          auto& e = entries.back();
          e.dataFile = index;
          e.dataOffset = offset;
          e.dataLen = length;
          return {};
        });
  } else {
    st = fr->second.feed(
        bytes, onEntry,
        [this, &entries, &raw, &name, rawImage](std::string_view data) -> Status {
          raw += data.size();
          if (rawImage) {
            if (entries.empty()) {
              entries.push_back({});
            }
            return rawStreamed_[name].append(data.data(), data.size());
          }
          return appendData(name, entries, data);
        });
  }
  if (!st) {
    return fail(std::move(st).error().context(where + ": chunk of " + name));
  }
  if (got != c.getEntries() || raw != c.getRawBytes()) {
    return failMsg(where + ": chunk of " + name + " announces " +
                   std::to_string(c.getEntries()) + " entries and " +
                   std::to_string(c.getRawBytes()) + " raw bytes but holds " +
                   std::to_string(got) + " and " + std::to_string(raw));
  }
  entryCount_ += got;
  rawBytes_ += raw;
  return {};
}

Status RestoreImages::appendRaw(uint32_t image, size_t len, const std::string& where,
                                const std::function<Status(char*)>& fill) {
  auto it = names_.find(image);
  auto kind = it == names_.end() ? std::nullopt : imageKindForFile(it->second);
  const bool rawImage = kind && kind->magic == 0 && kind->headMagic == 0;
  // A raw image (pages-N.img) is data only: it goes in one entry with no payload.
  if (rawImage && images_[it->second].empty()) {
    images_[it->second].push_back({});
  }
  if (it == names_.end() || images_[it->second].empty()) {
    return failMsg(where + ": raw data for image #" + std::to_string(image) +
                   " with no entry before it");
  }
  // Raw data may come in messages of its own or inside chunks: one framer follows both.
  if (auto fr = framers_.find(image); fr != framers_.end()) {
    CRPIPE_TRY_CTX(fr->second.feedRaw(len), where + ": " + it->second);
  }
  if (rawImage) {
    // Page contents: hundreds of MiB, into memory that grows without copying.
    auto& grow = rawStreamed_[it->second];
    auto dst = grow.reserve(len);
    if (!dst) {
      return fail(std::move(dst).error().context(where + ": " + it->second));
    }
    CRPIPE_TRY(fill(*dst));
    grow.commit(len);
  } else {
    std::string bytes(len, '\0');
    CRPIPE_TRY(fill(bytes.data()));
    CRPIPE_TRY(appendData(it->second, images_[it->second], bytes));
  }
  rawBytes_ += len;
  return {};
}

RestoreImages::DataFile& RestoreImages::dataFileOf(const std::string& image, bool referenced,
                                                   uint32_t* index) {
  auto [it, fresh] = dataFileIndex_.try_emplace(image + (referenced ? " (directory)" : ""),
                                                static_cast<uint32_t>(dataFiles_.size()));
  if (fresh) {
    auto f = std::make_unique<DataFile>();
    f->image = image;
    f->referenced = referenced;
    dataFiles_.push_back(std::move(f));
  }
  *index = it->second;
  return *dataFiles_[it->second];
}

Status RestoreImages::appendData(const std::string& image, std::vector<ImageEntryData>& entries,
                                 std::string_view bytes) {
  uint32_t index = 0;
  DataFile& f = dataFileOf(image, false, &index);
  auto& e = entries.back();
  if (e.dataLen == 0) {
    e.dataFile = index;
    e.dataOffset = f.streamed.size();
  }
  // An entry's data may come in several pieces: they follow each other in its file.
  CRPIPE_TRY(f.streamed.append(bytes.data(), bytes.size()));
  e.dataLen += bytes.size();
  return {};
}

std::string_view RestoreImages::data(const ImageEntryData& e) const {
  if (e.dataLen == 0 || e.dataFile >= dataFiles_.size()) {
    return {};
  }
  const DataFile& f = *dataFiles_[e.dataFile];
  std::string_view all = f.referenced ? f.map : f.streamed.view();
  if (e.dataOffset > all.size() || e.dataLen > all.size() - e.dataOffset) {
    return {};  // attachData refused such spans already
  }
  return all.substr(e.dataOffset, e.dataLen);
}

int RestoreImages::dataFd(uint32_t file) const {
  const DataFile& f = *dataFiles_.at(file);
  return f.referenced ? f.fd.get() : f.streamed.fd();
}

Status RestoreImages::attachData(const std::string& dir) {
  for (auto& fp : dataFiles_) {
    DataFile& f = *fp;
    if (!f.referenced) {
      continue;
    }
    const std::string path = dir + "/" + f.image;
    if (dir.empty()) {
      return failMsg(f.image + ": the stream left its entries' data in an image directory "
                     "(serializer read --data-refs), which this restore does not read");
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) < 0) {
      return failSys(path);
    }
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size < f.end) {
      return failMsg(path + " at offset " + std::to_string(size) +
                     ": truncated image: its entries' data runs to offset " +
                     std::to_string(f.end));
    }
    if (size == 0) {
      continue;
    }
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (p == MAP_FAILED && errno != ENODEV) {
      return failSys("mmap " + path);
    }
    if (p == MAP_FAILED) {
      // A filesystem that cannot map files: its data into memory that can be mapped.
      std::string copy(size, '\0');
      CRPIPE_TRY(readWhole(fd.get(), copy, path));
      CRPIPE_TRY(f.streamed.append(copy.data(), copy.size()));
      f.referenced = false;
      continue;
    }
    f.fd = std::move(fd);
    f.map = std::string_view(static_cast<const char*>(p), size);
  }
  return {};
}

GrowBuffer::~GrowBuffer() {
  if (data_ != nullptr) {
    ::munmap(data_, cap_);
  }
}

Status GrowBuffer::append(const void* data, size_t len) {
  auto dst = reserve(len);
  if (!dst) {
    return fail(std::move(dst).error());
  }
  std::memcpy(*dst, data, len);
  commit(len);
  return {};
}

Result<char*> GrowBuffer::reserve(size_t len) {
  if (size_ + len > cap_) {
    constexpr size_t kPage = 4096;
    size_t want = std::max<size_t>({cap_ * 2, size_ + len, size_t{1} << 20});
    want = (want + kPage - 1) / kPage * kPage;
    if (!fd_.valid()) {
      fd_ = UniqueFd(::memfd_create("crpipe-images", MFD_CLOEXEC));
      if (!fd_.valid()) {
        return failSys("memfd_create for image data");
      }
    }
    if (::ftruncate(fd_.get(), static_cast<off_t>(want)) < 0) {
      return failSys("grow image data to " + std::to_string(want) + " bytes");
    }
    void* p = data_ == nullptr
                  ? ::mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0)
                  : ::mremap(data_, cap_, want, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
      return failSys("grow a raw image buffer to " + std::to_string(want) + " bytes");
    }
    data_ = static_cast<char*>(p);
    cap_ = want;
  }
  return data_ + size_;
}

RestoreImages::~RestoreImages() {
  for (const auto& f : dataFiles_) {
    if (!f->map.empty()) {
      ::munmap(const_cast<char*>(f->map.data()), f->map.size());
    }
  }
  for (const auto& [name, data] : mapped_) {
    if (!data.empty() && !copied_.contains(name)) {
      ::munmap(const_cast<char*>(data.data()), data.size());
    }
  }
}

std::string_view RestoreImages::rawData(const std::string& name) const {
  auto m = mapped_.find(name);
  if (m != mapped_.end()) {
    return m->second;
  }
  auto g = rawStreamed_.find(name);
  if (g != rawStreamed_.end()) {
    return g->second.view();
  }
  const auto& e = entries(name);
  return e.empty() ? std::string_view() : data(e.front());
}

Status RestoreImages::mapRawImages(const std::string& dir) {
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) {
    return failSys("open image directory " + dir);
  }
  DIR* d = ::fdopendir(::dup(dfd.get()));
  if (d == nullptr) {
    return failSys("read image directory " + dir);
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    auto kind = n.ends_with(".img") ? imageKindForFile(n) : std::nullopt;
    if (kind && kind->magic == 0 && kind->headMagic == 0 && !images_.contains(n)) {
      names.push_back(n);
    }
  }
  ::closedir(d);
  for (const auto& n : names) {
    UniqueFd fd(::openat(dfd.get(), n.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) < 0) {
      return failSys(dir + "/" + n);
    }
    std::string_view data;
    if (st.st_size > 0) {
      // Read-only and private: the restore cannot change the image. The pages are read
      // once, in order, by process_vm_writev.
      void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE,
                       fd.get(), 0);
      if (p == MAP_FAILED && errno != ENODEV) {
        return failSys("mmap " + dir + "/" + n);
      }
      if (p == MAP_FAILED) {
        // A filesystem that cannot map files: read it, as the stream would have carried it.
        auto& buf = readCopies_.emplace_back(static_cast<size_t>(st.st_size), '\0');
        CRPIPE_TRY(readWhole(fd.get(), buf, dir + "/" + n));
        copied_.insert(n);
        mapped_[n] = buf;
        mappedBytes_ += buf.size();
        continue;
      }
      ::madvise(p, static_cast<size_t>(st.st_size), MADV_SEQUENTIAL);
      data = std::string_view(static_cast<const char*>(p), static_cast<size_t>(st.st_size));
    }
    mapped_[n] = data;
    mappedBytes_ += data.size();
  }
  return {};
}

const std::vector<ImageEntryData>& RestoreImages::entries(const std::string& name) const {
  static const std::vector<ImageEntryData> kNone;
  auto it = images_.find(name);
  return it == images_.end() ? kNone : it->second;
}

Status readRestoreImages(int fd, const std::string& name, RestoreImages& images) {
  StageReader reader(fd, name);
  for (;;) {
    uint64_t at = reader.offset();
    auto msg = reader.next();
    if (!msg) {
      return fail(std::move(msg).error());
    }
    if (!msg->has_value()) {
      return failMsg(name + " at offset " + std::to_string(at) + ": the stream ends before End");
    }
    auto done = images.consume(**msg, name + " at offset " + std::to_string(at), reader);
    if (!done) {
      return fail(std::move(done).error());
    }
    if (*done) {
      return {};
    }
  }
}

}  // namespace crpipe
