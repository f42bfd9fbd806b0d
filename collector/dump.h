#pragma once

#include <optional>

#include "collector/freezer.h"
#include "collector/options.h"
#include "common/log.h"
#include "common/result.h"
#include "common/stage_stream.h"

namespace crpipe::collector {

// Reports progress of the collection; the control channel or the log, as main decides.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void progress(const char* step, uint64_t done, uint64_t total,
                        const std::string& detail) = 0;
};

// Freezes the tree of opts.root and writes the whole dump onto `data` (ending with End).
// On success the tree is returned still frozen: the caller decides, once the images are
// safe, whether to kill it or release it. On failure the tree has been released running.
Result<FrozenTree> collectTree(const DumpOptions& opts, Log& log, StageWriter& data,
                               ProgressSink& progress);

}  // namespace crpipe::collector
