#pragma once

#include "common/log.h"
#include "coordinator/cli.h"
#include "coordinator/progress_view.h"

namespace crpipe {

// What a finished command has to say: the exit status and the lines for stderr.
struct Outcome {
  int exitCode = 0;
  std::vector<std::string> messages;
};

// crpipe run dump: collector -> serializer (or -> a stream file), the verdict on the tree
// sent only once the images are committed.
Outcome runDump(const DumpOptions& opts, ProgressView& view, Log& log);

}  // namespace crpipe
