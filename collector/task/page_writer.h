#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/image_stream.h"
#include "common/result.h"

namespace crpipe::collector::task {

inline constexpr uint64_t kPageSize = 4096;

// Writes one pagemap image (pagemap-PID.img or pagemap-shmem-SHMID.img) and its pages-N.img.
// Each run of pages becomes one PagemapEntry at once; the contents follow in pages-N.img in
// the same order, read in large batches: up to IOV_MAX ranges and kBatchBytes per
// process_vm_readv, each batch one raw stage message per MiB.
class PageWriter {
 public:
  // A buffer shared by every PageWriter of a dump.
  struct Buffer {
    std::string bytes;
  };
  static constexpr size_t kBatchBytes = 8 << 20;

  static Result<PageWriter> open(ImageEmitter& out, Buffer& buf, const std::string& pagemapName,
                                 uint32_t pagesId);
  PageWriter(PageWriter&&) = default;

  // Pages [vaddr, vaddr + n pages) of process `pid`, read with process_vm_readv.
  Status addRemote(pid_t pid, uint64_t vaddr, uint64_t nPages);
  // Pages recorded at `vaddr` whose contents are read from `fd` at `offset` (a shmem object,
  // or /proc/PID/mem for memory the task cannot read itself, PROT_NONE).
  Status addFromFd(int fd, uint64_t offset, uint64_t vaddr, uint64_t nPages);
  // Reads and writes whatever is queued. Must be called before the writer goes away.
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
