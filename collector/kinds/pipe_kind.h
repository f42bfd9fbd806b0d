#pragma once

#include <map>
#include <set>

#include "collector/kinds/fd_kind.h"

namespace crpipe::collector {

// Pipes and FIFOs. Buffered data is copied once per pipe with tee(2) from a read end, so
// the target never loses a byte.
class PipeKind : public FdKind {
 public:
  std::string_view name() const override { return "pipe"; }
  images::FdTypes type() const override { return images::PIPE; }
  images::FdTypes typeFor(const OpenFile& f) const override {
    return f.link.starts_with("pipe:[") ? images::PIPE : images::FIFO;
  }
  bool matches(const OpenFile& f) const override;
  Status collect(DumpContext& ctx, OpenFile& f, uint32_t id) override;
  Status finish(DumpContext& ctx) override;

 private:
  struct PipeSeen {
    bool reader = false;
    bool writer = false;
    std::string where;  // first holder, for errors
  };
  Status dumpData(DumpContext& ctx, const OpenFile& f, bool fifo);

  std::set<uint64_t> dataDumped_;
  std::map<uint64_t, PipeSeen> anonymous_;  // pipe inode -> which ends the tree holds
};

}  // namespace crpipe::collector
