#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/image_stream.h"
#include "common/result.h"

namespace crpipe::collector::task {

inline constexpr uint64_t kPageSize = 4096;

// Writes one pagemap image (pagemap-PID.img or pagemap-shmem-SHMID.img) and its pages-N.img.
// Each run of pages becomes one PagemapEntry at once; the contents follow in pages-N.img in
// the same order, read in large batches: up to IOV_MAX ranges and Buffer::batchBytes per
// process_vm_readv, each batch one ImagePages message. A batch is read on a thread of its
// own while the collector writes the batch before it to the stream (or goes on with the
// next process's state), so the read and the write overlap.
class PageWriter {
 public:
  // One batch buffer: anonymous memory of its own (page-aligned, so that a pipe can take
  // its pages by reference), and how far the stream must be read before it may change.
  class Slot {
   public:
    Slot() = default;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();
    // Room for `bytes` that nothing else holds: pages still lent to the stream pipe
    // (the reader has not taken them yet) are left to it and the slot gets new ones.
    Result<char*> take(ImageEmitter& out, size_t bytes);
    char* data() const { return data_; }
    uint64_t lentUntil = 0;  // stream bytes at the end of its last lent batch; 0: none

   private:
    char* data_ = nullptr;
    size_t size_ = 0;
  };
  // The buffers and the batch in flight, shared by every PageWriter of a dump: three
  // slots, one being read into while another is written out and the third may still be in
  // the stream pipe.
  struct Buffer {
    struct Pending;
    explicit Buffer(size_t batch = kMaxBatchBytes, bool refs = false);
    ~Buffer();
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    // Waits for the batch in flight and writes it. Before End, and before pages of an
    // image are written another way.
    Status drain();

    const size_t batchBytes;
    // --page-refs: pages read with process_vm_readv are named (ImagePageRefs), not read;
    // the slots and the reading thread stay unused.
    const bool pageRefs;
    Slot slots[3];
    int nextSlot = 0;
    std::unique_ptr<Pending> pending;
  };
  static constexpr size_t kMaxBatchBytes = 8 << 20;
  // Page references: ranges per ImagePageRefs message (16 bytes each on the wire).
  static constexpr size_t kRefsPerMessage = 4096;
  static constexpr size_t kRefBytesPerMessage = 16 << 20;
  // The batch size for a stream: twice what its pipe holds (1 to 8 MiB), so that a batch
  // is read while the one before drains from the pipe, and the slots' pages (touched once,
  // then reused) stay few; 8 MiB where the stream is not a pipe.
  static size_t batchBytesFor(const ImageEmitter& out);

  static Result<PageWriter> open(ImageEmitter& out, Buffer& buf, const std::string& pagemapName,
                                 uint32_t pagesId);
  PageWriter(PageWriter&&) = default;

  // Pages [vaddr, vaddr + n pages) of process `pid`, read with process_vm_readv.
  Status addRemote(pid_t pid, uint64_t vaddr, uint64_t nPages);
  // Pages recorded at `vaddr` whose contents are read from `fd` at `offset` (a shmem object,
  // or /proc/PID/mem for memory the task cannot read itself, PROT_NONE).
  Status addFromFd(int fd, uint64_t offset, uint64_t vaddr, uint64_t nPages);
  // Starts reading whatever is queued and writes the batch before it. Must be called
  // before the writer goes away; Buffer::drain() writes the last batch.
  Status flush();

  uint64_t pages() const { return pages_; }

 private:
  PageWriter(ImageEmitter& out, Buffer& buf, uint32_t pagemap, uint32_t pagesImg)
      : out_(&out), buf_(&buf), pagemap_(pagemap), pagesImg_(pagesImg) {}
  Status entry(uint64_t vaddr, uint64_t nPages);

  ImageEmitter* out_;
  Buffer* buf_;
  uint32_t pagemap_;
  uint32_t pagesImg_;
  pid_t pid_ = 0;
  std::vector<iovec> queued_;
  size_t queuedBytes_ = 0;
  uint64_t pages_ = 0;
};

}  // namespace crpipe::collector::task
