#include "collector/task/page_writer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <thread>
#include <utility>

#include "common/ptrace/remote_mem.h"
#include "common/vma.h"
#include "protos/pagemap.pb.h"

namespace crpipe::collector::task {

namespace {
// PE_PRESENT of CRIU's pagemap.h: the pages are in pages-N.img.
constexpr uint32_t kPePresent = 1 << 2;
}  // namespace

// A batch being read: its ranges, where they go, and the read's result.
struct PageWriter::Buffer::Pending {
  ImageEmitter* out = nullptr;
  uint32_t image = 0;
  pid_t pid = 0;
  std::vector<iovec> ranges;
  size_t len = 0;
  int slot = 0;
  Result<size_t> got = size_t{0};
  std::jthread thread;  // last: joined first when the batch goes, before what it writes
};

PageWriter::Buffer::Buffer(size_t batch, bool refs) : batchBytes(batch), pageRefs(refs) {}

size_t PageWriter::batchBytesFor(const ImageEmitter& out) {
  size_t pipe = out.pipeCapacity();
  if (pipe == 0) {
    return kMaxBatchBytes;
  }
  return std::clamp<size_t>(2 * pipe, 1 << 20, kMaxBatchBytes);
}
PageWriter::Buffer::~Buffer() = default;

PageWriter::Slot::~Slot() {
  if (data_ != nullptr) {
    ::munmap(data_, size_);
  }
}

Result<char*> PageWriter::Slot::take(ImageEmitter& out, size_t bytes) {
  if (data_ != nullptr && size_ < bytes) {
    ::munmap(data_, size_);  // a larger batch than before (never in a dump: one size)
    data_ = nullptr;
  }
  if (data_ != nullptr && lentUntil != 0) {
    auto read = out.consumedUpTo();
    if (!read) {
      return fail(std::move(read).error());
    }
    if (*read < lentUntil) {
      // Still in the pipe: its pages stay the pipe's (munmap leaves them to it).
      ::munmap(data_, size_);
      data_ = nullptr;
    }
  }
  lentUntil = 0;
  if (data_ == nullptr) {
    // Shared (shmem) pages: a page that was lent and is read into again is written in
    // place; a private anonymous page would be copied on that write, every batch.
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return failSys("mmap a page batch buffer");
    }
    data_ = static_cast<char*>(p);
    size_ = bytes;
  }
  return data_;
}

namespace {

// Waits for `p`'s read, then writes its pages to the stream.
Status complete(PageWriter::Buffer& buf, PageWriter::Buffer::Pending& p) {
  p.thread.join();
  if (!p.got) {
    return fail(std::move(p.got).error());
  }
  if (*p.got != p.len) {
    return failMsg(inject::shortReadMessage(p.pid, p.ranges, *p.got));
  }
  // Lent to the stream where it is a pipe (the serializer's): the pages are copied once,
  // into the image file, instead of into the pipe first.
  auto& slot = buf.slots[p.slot];
  CRPIPE_TRY(p.out->pages(p.image, std::string_view(slot.data(), p.len), /*lend=*/true));
  slot.lentUntil = p.out->streamBytes();
  return {};
}

}  // namespace

Status PageWriter::Buffer::drain() {
  if (pending == nullptr) {
    return {};
  }
  auto p = std::move(pending);
  return complete(*this, *p);
}

Result<PageWriter> PageWriter::open(ImageEmitter& out, Buffer& buf,
                                    const std::string& pagemapName, uint32_t pagesId) {
  auto pm = out.image(pagemapName);
  if (!pm) {
    return fail(std::move(pm).error());
  }
  // Announced even when no page follows: a restore opens the pages image the head names.
  auto pages = out.image("pages-" + std::to_string(pagesId) + ".img");
  if (!pages) {
    return fail(std::move(pages).error());
  }
  images::PagemapHead head;
  head.set_pages_id(pagesId);
  CRPIPE_TRY(out.entry(*pm, head));
  return PageWriter(out, buf, *pm, *pages);
}

Status PageWriter::entry(uint64_t vaddr, uint64_t nPages) {
  images::PagemapEntry e;
  e.set_vaddr(vaddr);
  // CRIU reads nr_pages when set and falls back to the 32-bit compat field.
  e.set_compat_nr_pages(static_cast<uint32_t>(std::min<uint64_t>(nPages, UINT32_MAX)));
  e.set_nr_pages(nPages);
  e.set_flags(kPePresent);
  pages_ += nPages;
  return out_->entry(pagemap_, e);
}

Status PageWriter::addRemote(pid_t pid, uint64_t vaddr, uint64_t nPages) {
  if (pid_ != pid && !queued_.empty()) {
    CRPIPE_TRY(flush());
  }
  pid_ = pid;
  CRPIPE_TRY(entry(vaddr, nPages));
  uint64_t len = nPages * kPageSize;
  if (buf_->pageRefs) {
    // Named, not read; sent every 16 MiB so that the serializer starts copying while the
    // rest of the task's page table is read.
    while (len > 0) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(len, kRefBytesPerMessage - queuedBytes_));
      queued_.push_back({reinterpret_cast<void*>(vaddr), take});
      queuedBytes_ += take;
      vaddr += take;
      len -= take;
      if (queuedBytes_ == kRefBytesPerMessage || queued_.size() >= kRefsPerMessage) {
        CRPIPE_TRY(flush());
      }
    }
    return {};
  }
  while (len > 0) {
    size_t room = buf_->batchBytes - queuedBytes_;
    size_t take = static_cast<size_t>(std::min<uint64_t>(len, room));
    queued_.push_back({reinterpret_cast<void*>(vaddr), take});
    queuedBytes_ += take;
    vaddr += take;
    len -= take;
    // Full buffer, or as many ranges as a few process_vm_readv calls take.
    if (queuedBytes_ == buf_->batchBytes || queued_.size() >= 8 * IOV_MAX) {
      CRPIPE_TRY(flush());
    }
  }
  return {};
}

Status PageWriter::flush() {
  if (queued_.empty()) {
    return {};
  }
  if (buf_->pageRefs) {
    CRPIPE_TRY(out_->pageRefs(pagesImg_, pid_, queued_));
    queued_.clear();
    queuedBytes_ = 0;
    return {};
  }
  // This batch is read on its own thread into the buffer the batch before it is not in...
  auto job = std::make_unique<Buffer::Pending>();
  job->out = out_;
  job->image = pagesImg_;
  job->pid = pid_;
  job->ranges = std::move(queued_);
  job->len = queuedBytes_;
  job->slot = buf_->nextSlot;
  buf_->nextSlot = (buf_->nextSlot + 1) % 3;
  queued_.clear();
  queuedBytes_ = 0;
  Buffer::Pending* j = job.get();
  auto room = buf_->slots[j->slot].take(*out_, buf_->batchBytes);
  if (!room) {
    return fail(std::move(room).error());
  }
  char* dst = *room;
  j->thread = std::jthread([j, dst]() { j->got = inject::readRemoteV(j->pid, j->ranges, dst, j->len); });
  // ...while that one is written to the stream (in order: same image, earlier pages).
  auto before = std::exchange(buf_->pending, std::move(job));
  if (before != nullptr) {
    CRPIPE_TRY(complete(*buf_, *before));
  }
  return {};
}

Status PageWriter::addFromFd(int fd, uint64_t offset, uint64_t vaddr, uint64_t nPages) {
  CRPIPE_TRY(flush());  // keep the data in entry order: every batch written first
  CRPIPE_TRY(buf_->drain());
  CRPIPE_TRY(entry(vaddr, nPages));
  uint64_t len = nPages * kPageSize;
  auto room = buf_->slots[0].take(*out_, buf_->batchBytes);
  if (!room) {
    return fail(std::move(room).error());
  }
  char* dst = *room;
  while (len > 0) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(len, buf_->batchBytes));
    size_t got = 0;
    while (got < take) {
      ssize_t r = ::pread(fd, dst + got, take - got, static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail(Error::sys("read pages at " + hexAddr(vaddr)));
      }
      if (r == 0) {
        // Past the end of a shmem object: the pages read as zeroes.
        std::fill(dst + got, dst + take, '\0');
        break;
      }
      got += static_cast<size_t>(r);
    }
    CRPIPE_TRY(out_->pages(pagesImg_, std::string_view(dst, take)));  // copied: reused next
    offset += take;
    vaddr += take;
    len -= take;
  }
  return {};
}

}  // namespace crpipe::collector::task
