#pragma once

#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "collector/dump_context.h"
#include "collector/kinds/fd_kind.h"
#include "collector/open_file.h"
#include "common/result.h"

namespace crpipe::collector {

// The open file descriptions of the dump. Every fd of every task, and every file found in
// a queued SCM_RIGHTS message, goes through add(): a description seen before (same inode,
// and kcmp(KCMP_FILE) says it is the same struct file) gets its old id; a new one gets a
// new id and is handed to the fd kind that matches it.
class FileTable {
 public:
  explicit FileTable(std::vector<std::unique_ptr<FdKind>> kinds) : kinds_(std::move(kinds)) {}

  struct Known {
    uint32_t id;
    images::FdTypes type;
  };
  Result<Known> add(DumpContext& ctx, OpenFile f);

  Status prepareAll(DumpContext& ctx);
  // Every kind's FdKind::readAhead on one grabbed file; safe on another thread.
  void readAhead(OpenFile& f, ReadAheadContext& ctx) const;
  Status finishAll(DumpContext& ctx);

  // Closes the duplicate of every file (the entries stay).
  void closeFiles();

  // Ids are also handed out to objects no fd holds (embryo sockets).
  uint32_t newId() { return nextId_++; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    // Kept open for the whole dump: kcmp needs the duplicate, and it pins the inode so
    // that no other file can take its number while the dump runs.
    OpenFile file;
    Known known;
  };
  FdKind* kindFor(const OpenFile& f) const;

  std::vector<std::unique_ptr<FdKind>> kinds_;
  std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> byInode_;
  // A deque: collect() of one entry may add more (files in queued messages) while it
  // holds a reference to its own.
  std::deque<Entry> entries_;
  uint32_t nextId_ = 1;
};

}  // namespace crpipe::collector
