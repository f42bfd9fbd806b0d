#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "collector/dump_context.h"
#include "collector/task/page_writer.h"
#include "collector/task/task_files.h"
#include "collector/task/thread_state.h"
#include "common/pagemap_scan.h"
#include "common/result.h"
#include "protos/mm.pb.h"

namespace crpipe::collector::task {

// State shared by the memory dumps of every process of the tree.
struct MmDumpState {
  TaskFiles& files;
  PageWriter::Buffer buffer;
  uint32_t nextPagesId = 1;
  // The shared zero page's frame (0: unknown), found when pagemap entries are first read.
  std::optional<uint64_t> zeroPfn;
  std::set<std::pair<dev_t, ino_t>> shmemDone;  // shared anonymous objects already dumped
  uint64_t pagesDumped = 0;
  std::vector<uint64_t> pagemapBuf;  // /proc/PID/pagemap entries, reused for every mapping
  // PAGEMAP_SCAN: -1 not tried yet, 1 in use, 0 not in this kernel (or --no-pagemap-scan):
  // pagemap entries instead. Its output buffer, reused.
  int pagemapScan = -1;
  std::vector<PageRegion> scanBuf;
  // Processes whose private pages went out early: the mappings chosen, [start, end).
  std::map<pid_t, std::vector<std::pair<uint64_t, uint64_t>>> early;

  MmDumpState(TaskFiles& f, size_t batchBytes, bool pageRefs)
      : files(f), buffer(batchBytes, pageRefs) {}
};

// The frame number of the kernel's shared zero page, which a read fault maps into private
// anonymous memory: such pages need no dump. 0 if pagemap hides frame numbers (no
// CAP_SYS_ADMIN).
uint64_t findZeroPfn();

// pagemap-PID.img + pages-N.img of a process's private mappings, chosen from
// /proc/PID/maps right after the freeze: no page table walk (smaps walks every page for
// its counters: ~1.5 ms for 64 MiB) and no file is opened before the first pages are on
// their way. dumpMm checks the choice against smaps later. A process with a private
// mapping of a device is left to dumpMm whole (only VmFlags tell VM_IO/VM_PFNMAP apart,
// and such frames must not be read).
Status dumpPrivateMemoryEarly(DumpContext& ctx, MmDumpState& st, pid_t pid);

// pagemap-PID.img + pages-N.img (unless dumpPrivateMemoryEarly wrote them), and, for
// shared anonymous memory not seen in an earlier process, pagemap-shmem-SHMID.img +
// pages-N.img; returns the MmEntry with every VMA for
// mm-PID.img, which the caller completes with what only the task can say (brk, dumpable,
// THP) and writes. Called before any syscall is injected into the task: the pages are
// being copied (by the serializer, with --page-refs) while the task is asked the rest.
Result<images::MmEntry> dumpMm(DumpContext& ctx, MmDumpState& st, pid_t pid);

}  // namespace crpipe::collector::task
