#pragma once

#include "restorer/kinds/restore_kind.h"

namespace crpipe::restorer {

// Anonymous pipes: one pipe2() per pipe_id, by the one task that creates every
// description of that pipe; its size (F_SETPIPE_SZ) and buffered data
// (pipes-data.img) are put back before any end is handed out.
class PipeKind : public RestoreKind {
 public:
  std::string_view name() const override { return "pipe"; }
  images::FdTypes type() const override { return images::PIPE; }
  std::string groupKey(const images::FileEntry& e) const override {
    return "pipe " + std::to_string(e.pipe().pipe_id());
  }
  Status check(const images::FileEntry& e) const override;
  Result<OpenResult> open(OpenContext& ctx, const images::FileEntry& e) override;
};

// Sets the pipe's size and writes its buffered data through `writeEnd` (which must not
// block: the data is at most the pipe's size).
Status refillPipe(int writeEnd, const images::PipeDataEntry& entry, const std::string& data);

}  // namespace crpipe::restorer
