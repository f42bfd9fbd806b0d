#pragma once

#include "restorer/kinds/restore_kind.h"

namespace crpipe::restorer {

// Regular files, directories and devices, reopened by path with the recorded open flags,
// position and owner. A file unlinked while open comes back unlinked when it was empty
// (its contents are not in the images; a non-empty one is refused at plan time).
class RegFileKind : public RestoreKind {
 public:
  std::string_view name() const override { return "regular file"; }
  images::FdTypes type() const override { return images::REG; }
  Status check(const images::FileEntry& e) const override;
  Result<OpenResult> open(OpenContext& ctx, const images::FileEntry& e) override;
};

// Opens `reg` by path with its recorded flags (O_CLOEXEC added, O_CREAT/O_TRUNC/O_EXCL
// removed), checks that it is still the kind of file it was, and sets position and
// owner. Shared with the FIFO kind, whose path is a RegFileEntry.
Result<UniqueFd> openByPath(const images::RegFileEntry& reg, int extraFlags);
// openByPath, then moved above ctx.fdBase: a finished description (FIFOs use it too).
Result<OpenResult> openByPathAbove(const OpenContext& ctx, const images::RegFileEntry& reg);

// --inherit-fd: crpipe's fd for file `id`, reopened through /proc/self/fd with `flags`.
Result<UniqueFd> reopenInherited(OpenContext& ctx, uint32_t id, int flags, const std::string& what);

}  // namespace crpipe::restorer
