#pragma once

#include "collector/kinds/fd_kind.h"

namespace crpipe::collector {

// Unix domain sockets: sock_diag table per network namespace, options read through the
// collector's duplicate, queues peeked without consuming.
class UnixSocketKind : public FdKind {
 public:
  std::string_view name() const override { return "unix socket"; }
  images::FdTypes type() const override { return images::UNIXSK; }
  bool matches(const OpenFile& f) const override;
  Status collect(DumpContext& ctx, OpenFile& f, uint32_t id) override;
};

}  // namespace crpipe::collector
