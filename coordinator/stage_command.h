#pragma once

#include "common/log.h"
#include "coordinator/cli.h"
#include "coordinator/dump_command.h"

namespace crpipe {

// crpipe stage ...: one stage binary on a stream file, its stdio inherited; the exit
// status is the stage's.
Outcome runStage(const StageOptions& opts, Log& log);

}  // namespace crpipe
