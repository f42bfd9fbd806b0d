#pragma once

#include "collector/dump.h"
#include "collector/dump_context.h"
#include "collector/freezer.h"
#include "common/result.h"

namespace crpipe::collector::task {

// Writes the state of every process and thread of the frozen tree (issue 4): core-TID.img
// per thread, and per process mm-PID.img, pagemap-PID.img + pages-N.img (and
// pagemap-shmem-SHMID.img for shared anonymous memory), fs-PID.img. Files a task uses
// without an fd (executable, cwd, root, mapped files) get REG entries in files.img.
// Called once every fd of the tree was collected.
Status collectTaskState(DumpContext& ctx, const FrozenTree& tree, ProgressSink& progress);

}  // namespace crpipe::collector::task
