#pragma once

#include <memory>
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

// The collector's hold on what it read, past the end of the stream: a duplicate of every
// file of the tree and the kinds' records. Dropping it (closing 10,000 duplicates, freeing
// their records) takes tens of ms, which the tree need not spend frozen: main drops it
// once the tree is released, or while the tree waits for the verdict anyway. Declared
// before the tree, it also goes after the tree on every error path.
class DumpHold {
 public:
  DumpHold();
  ~DumpHold();
  DumpHold(const DumpHold&) = delete;
  DumpHold& operator=(const DumpHold&) = delete;

  // Closes and frees everything now.
  void drop();
  // For a collector about to exit: closes its duplicates of the tree's files now (a tree
  // left running must see its peers' EOFs, its locks and names released as before), and
  // frees nothing else: 10,000 sockets' tables and entries took ~8 ms to free, and the exit
  // is about to return the memory.
  void abandon();

  struct Parts;

 private:
  friend class DumpHoldAccess;
  std::unique_ptr<Parts> parts_;
};

// Freezes the tree of opts.root and writes the whole dump onto `data` (ending with End).
// On success the tree is returned still frozen: the caller decides, once the images are
// safe, whether to kill it or release it. On failure the tree has been released running.
// What the dump holds afterwards is left in `hold`.
Result<FrozenTree> collectTree(const DumpOptions& opts, Log& log, StageWriter& data,
                               ProgressSink& progress, DumpHold& hold);

}  // namespace crpipe::collector
