#pragma once

#include "collector/dump.h"
#include "collector/dump_context.h"
#include "collector/freezer.h"
#include "collector/task/mm_dump.h"
#include "collector/task/task_files.h"
#include "common/result.h"

namespace crpipe::collector::task {

// Writes the state of every process and thread of the frozen tree (issue 4): core-TID.img
// per thread, and per process mm-PID.img, pagemap-PID.img + pages-N.img (and
// pagemap-shmem-SHMID.img for shared anonymous memory), fs-PID.img. Files a task uses
// without an fd (executable, cwd, root, mapped files) get REG entries in files.img.
// In two steps: `memory` right after the freeze (the private pages of every process,
// which the serializer copies while the rest is collected), `rest` once every fd of the
// tree was collected.
class TaskStateDump {
 public:
  explicit TaskStateDump(const DumpContext& ctx);
  Status memory(DumpContext& ctx, const FrozenTree& tree);
  Status rest(DumpContext& ctx, const FrozenTree& tree, ProgressSink& progress);

 private:
  TaskFiles files_;
  MmDumpState mm_;
};

}  // namespace crpipe::collector::task
