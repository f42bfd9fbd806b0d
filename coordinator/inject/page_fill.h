#pragma once

#include <sys/types.h>

#include <cstdint>

#include "common/result.h"
#include "coordinator/inject/task_images.h"

namespace crpipe::inject {

// Writes the stored pages of `runs` into task `pid` (each run at its vaddr) with
// process_vm_writev: one copy, from the images into the task's fresh memory. With
// `split`, a large fill is split in two halves by bytes, the second written by a helper
// thread, so both CPUs take page faults (allocation, zeroing) at once: faulting fresh
// memory in, not the copy, is most of the cost. Adds the bytes written to *bytes.
Status fillPages(pid_t pid, const PageRuns& runs, uint64_t* bytes, bool split = true);

}  // namespace crpipe::inject
