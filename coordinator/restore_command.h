#pragma once

#include "common/log.h"
#include "coordinator/cli.h"
#include "coordinator/dump_command.h"
#include "coordinator/progress_view.h"

namespace crpipe {

// crpipe run restore: images (through crpipe-serializer read) or a stream -> plan ->
// one restorer per task with its original pid, driven through the restore phases.
// With --check-only, `report` receives what /proc showed of the restored tree, as JSON.
Outcome runRestore(const RestoreOptions& opts, ProgressView& view, Log& log,
                   std::string& report);

}  // namespace crpipe
