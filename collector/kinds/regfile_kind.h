#pragma once

#include "collector/kinds/fd_kind.h"

namespace crpipe::collector {

// Regular files, directories and devices, recorded by path (CRIU's reg_file_entry).
class RegFileKind : public FdKind {
 public:
  std::string_view name() const override { return "regular file"; }
  images::FdTypes type() const override { return images::REG; }
  bool matches(const OpenFile& f) const override;
  Status collect(DumpContext& ctx, OpenFile& f, uint32_t id) override;
};

// Fills a RegFileEntry for `f` (shared with FIFOs, which are opened by path too).
Result<images::RegFileEntry> describeByPath(DumpContext& ctx, const OpenFile& f, uint32_t id);

// The key of --external file[MNT_ID:INODE], both in hex as CRIU writes them.
std::string externalFileKey(int mntId, uint64_t inode);

}  // namespace crpipe::collector
