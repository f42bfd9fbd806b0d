#pragma once

#include <sys/types.h>

#include <set>
#include <utility>
#include <vector>

#include "collector/dump_context.h"
#include "collector/task/page_writer.h"
#include "collector/task/task_files.h"
#include "collector/task/thread_state.h"
#include "common/result.h"
#include "protos/mm.pb.h"

namespace crpipe::collector::task {

// State shared by the memory dumps of every process of the tree.
struct MmDumpState {
  TaskFiles& files;
  PageWriter::Buffer buffer;
  uint32_t nextPagesId = 1;
  uint64_t zeroPfn = 0;  // the shared zero page's frame (0: unknown)
  std::set<std::pair<dev_t, ino_t>> shmemDone;  // shared anonymous objects already dumped
  uint64_t pagesDumped = 0;
  std::vector<uint64_t> pagemapBuf;  // /proc/PID/pagemap entries, reused for every mapping

  MmDumpState(TaskFiles& f, size_t batchBytes, bool pageRefs)
      : files(f), buffer(batchBytes, pageRefs) {}
};

// The frame number of the kernel's shared zero page, which a read fault maps into private
// anonymous memory: such pages need no dump. 0 if pagemap hides frame numbers (no
// CAP_SYS_ADMIN).
uint64_t findZeroPfn();

// pagemap-PID.img + pages-N.img, and, for shared anonymous memory not seen in an earlier
// process, pagemap-shmem-SHMID.img + pages-N.img; returns the MmEntry with every VMA for
// mm-PID.img, which the caller completes with what only the task can say (brk, dumpable,
// THP) and writes. Called before any syscall is injected into the task: the pages are
// being copied (by the serializer, with --page-refs) while the task is asked the rest.
Result<images::MmEntry> dumpMm(DumpContext& ctx, MmDumpState& st, pid_t pid);

}  // namespace crpipe::collector::task
