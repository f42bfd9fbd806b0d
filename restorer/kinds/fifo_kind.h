#pragma once

#include "restorer/kinds/restore_kind.h"

namespace crpipe::restorer {

// FIFOs, opened by the path of their REG entry (regf_id) with the recorded flags. Every
// open of one FIFO is made by one task, behind a helper O_RDWR open that keeps the
// opens from blocking (or failing with ENXIO) and through which fifo-data.img is put
// back; the helper closes when the phase ends.
class FifoKind : public RestoreKind {
 public:
  std::string_view name() const override { return "fifo"; }
  images::FdTypes type() const override { return images::FIFO; }
  std::string groupKey(const images::FileEntry& e) const override {
    return "fifo " + std::to_string(e.fifo().pipe_id());
  }
  Result<OpenResult> open(OpenContext& ctx, const images::FileEntry& e) override;
};

}  // namespace crpipe::restorer
