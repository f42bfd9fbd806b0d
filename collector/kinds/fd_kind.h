#pragma once

#include <cstdint>
#include <string_view>

#include "collector/dump_context.h"
#include "collector/open_file.h"
#include "collector/read_ahead.h"
#include "common/result.h"
#include "protos/fdinfo.pb.h"

namespace crpipe::collector {

// One kind of file (regular file, pipe, unix socket, ...) on the dump side. Each kind is one
// module in collector/kinds/ listed in registry.cc. An instance lives for one dump and may
// keep per-dump state (e.g. the sock_diag table of unix sockets).
class FdKind {
 public:
  virtual ~FdKind() = default;

  virtual std::string_view name() const = 0;
  virtual images::FdTypes type() const = 0;
  // The fdinfo type of one file, for kinds that cover several (pipes and FIFOs).
  virtual images::FdTypes typeFor(const OpenFile&) const { return type(); }

  // Whether this kind records the file; decided from st_mode and the /proc link text.
  virtual bool matches(const OpenFile& f) const = 0;

  // Reads ahead what needs only the file's duplicate (syscalls on it, nothing shared) and
  // leaves it in f.ahead for matches() and collect(). Runs on either of the two threads
  // that grab a task's fds (FdPrefetcher) while collect() runs for earlier fds, so it may
  // use `f` and the calling thread's `ctx` alone, never the kind's state. The first kind
  // that leaves something in f.ahead has the file to itself. Kinds that read nothing ahead
  // keep the default.
  virtual void readAhead(OpenFile&, ReadAheadContext& /*ctx*/) const {}

  // Once per dump, after the tree is frozen and before any fd is collected.
  virtual Status prepare(DumpContext&) { return {}; }

  // Records one open file description under `id`: its FileEntry in files.img and any data
  // it carries (pipe buffers, socket queues). May ask ctx.files for the ids of other files
  // (files passed in queued messages). Must not change the file's state for good.
  virtual Status collect(DumpContext& ctx, OpenFile& f, uint32_t id) = 0;

  // Once per dump, after every fd was collected: checks that need the whole picture
  // (a peer outside the tree), and records objects no fd holds (embryo connections).
  virtual Status finish(DumpContext&) { return {}; }
};

}  // namespace crpipe::collector
