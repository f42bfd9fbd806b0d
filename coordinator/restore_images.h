#pragma once

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/image_format.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "common/stage_stream.h"
#include "protos/stage.capnp.h"

namespace crpipe {

// The image entries of a dump as they arrive on a stage stream (from `crpipe-serializer
// read` or straight from a collector), taken front to back, never seeked: each image file
// by name, each entry with where the data that followed it (socket queue, pipe buffer) is
// kept: a span of one of RestoreImages' data files (RestoreImages::data()).
struct ImageEntryData {
  std::string payload;
  uint32_t dataFile = 0;  // RestoreImages::dataFd(dataFile); meaningful when dataLen > 0
  uint64_t dataOffset = 0;
  uint64_t dataLen = 0;
};

// The contents of a raw image as it arrives in pieces: a memfd mapped shared and grown
// with mremap, which moves page tables instead of copying, so each byte is copied once
// (from the stream's buffer) however large the image grows, and restorers can map the
// same pages through fd().
class GrowBuffer {
 public:
  GrowBuffer() = default;
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;
  ~GrowBuffer();
  Status append(const void* data, size_t len);
  // Room for `len` more bytes at the end, to fill (straight from a stream) before commit.
  Result<char*> reserve(size_t len);
  void commit(size_t len) { size_ += len; }
  std::string_view view() const { return {data_, size_}; }
  size_t size() const { return size_; }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  char* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

class RestoreImages {
 public:
  RestoreImages() = default;
  RestoreImages(const RestoreImages&) = delete;
  RestoreImages& operator=(const RestoreImages&) = delete;
  ~RestoreImages();

  // Takes one message; true once End arrived and the counts matched. The payload of an
  // ImagePages message is read from `in`, straight into its place.
  Result<bool> consume(proto::Message::Reader msg, const std::string& where, StageReader& in);

  // The entries of one image file ("pstree.img"); empty if the dump has none.
  const std::vector<ImageEntryData>& entries(const std::string& name) const;
  bool has(const std::string& name) const {
    return images_.contains(name) || mapped_.contains(name);
  }
  // The data of a raw image (pages-N.img): mapped from the image directory (mapRawImages)
  // or, from a stream, what followed its entry. Empty if the dump has none.
  std::string_view rawData(const std::string& name) const;
  // Maps every raw image of `dir` (read-only, MAP_PRIVATE) that the stream left off
  // (`crpipe-serializer read --no-pages`). The images stay byte-identical.
  Status mapRawImages(const std::string& dir);
  uint64_t mappedBytes() const { return mappedBytes_; }
  // The data that followed an entry (a socket's queued message, a pipe's buffer).
  std::string_view data(const ImageEntryData& e) const;
  // The files that hold entries' data, for restorers to map (pidfd_getfd of dataFd(i)):
  // an image file of the directory (read with --data-refs) or what came on the stream.
  uint32_t dataFiles() const { return static_cast<uint32_t>(dataFiles_.size()); }
  int dataFd(uint32_t file) const;
  // Once the stream has ended: opens and maps the image files of `dir` that hold data the
  // stream referred to (ImageChunk.dataAt), checking that each holds all of it. `dir`
  // empty: no directory, and the stream must have carried all its data.
  Status attachData(const std::string& dir);
  // Every image file name the dump has, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, entries] : images_) {
      out.push_back(name);
    }
    for (const auto& [name, data] : mapped_) {
      if (!images_.contains(name)) {
        out.push_back(name);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  // One ImageChunk: its entries and their data, split with the image's framer.
  Status consumeChunk(proto::ImageChunk::Reader c, const std::string& where);
  // Appends `len` raw bytes to image #image: `fill` writes them to the pointer it is given.
  Status appendRaw(uint32_t image, size_t len, const std::string& where,
                   const std::function<Status(char*)>& fill);

  // A file that holds entries' data.
  struct DataFile {
    std::string image;    // "sk-queues.img"
    bool referenced = false;  // left in the image directory (dataAt); else streamed
    GrowBuffer streamed;  // streamed: the data as it came (a memfd)
    UniqueFd fd;          // referenced: the image file
    std::string_view map;  // referenced: its mapping
    uint64_t end = 0;     // referenced: where the last data ends
  };
  // The data file of an image's entries (made on first use).
  DataFile& dataFileOf(const std::string& image, bool referenced, uint32_t* index);
  // Appends streamed data to the last entry of `image`.
  Status appendData(const std::string& image, std::vector<ImageEntryData>& entries,
                    std::string_view bytes);

  std::vector<std::unique_ptr<DataFile>> dataFiles_;
  std::map<std::string, uint32_t> dataFileIndex_;
  std::map<uint32_t, std::string> names_;
  std::map<uint32_t, ImageFramer> framers_;  // where each image's chunks stand
  std::map<std::string, std::vector<ImageEntryData>> images_;
  std::map<std::string, std::string_view> mapped_;  // munmap'd by the destructor
  std::map<std::string, GrowBuffer> rawStreamed_;  // raw images that came on the stream
  std::deque<std::string> readCopies_;  // raw images read, where mmap is not supported
  std::set<std::string> copied_;
  uint64_t mappedBytes_ = 0;
  bool hello_ = false;
  uint64_t entryCount_ = 0;
  uint64_t rawBytes_ = 0;
};

// Reads a whole stage stream from fd (blocking, front to back) into `images`.
Status readRestoreImages(int fd, const std::string& name, RestoreImages& images);

}  // namespace crpipe
