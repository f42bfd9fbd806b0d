#include "restorer/kinds/registry.h"

#include "restorer/kinds/fifo_kind.h"
#include "restorer/kinds/pipe_kind.h"
#include "restorer/kinds/regfile_kind.h"
#include "restorer/kinds/unix_kind.h"

namespace crpipe::restorer {

std::vector<std::unique_ptr<RestoreKind>> makeRestoreKinds() {
  std::vector<std::unique_ptr<RestoreKind>> kinds;
  kinds.push_back(std::make_unique<RegFileKind>());  // files, directories, devices by path
  kinds.push_back(std::make_unique<PipeKind>());     // pipes, with their buffered data
  kinds.push_back(std::make_unique<FifoKind>());     // FIFOs by path, with their data
  kinds.push_back(std::make_unique<UnixSocketKind>());  // unix sockets, in their phases
  return kinds;
}

RestoreKind* findKind(const std::vector<std::unique_ptr<RestoreKind>>& kinds,
                      images::FdTypes type) {
  for (const auto& k : kinds) {
    if (k->type() == type) {
      return k.get();
    }
  }
  return nullptr;
}

}  // namespace crpipe::restorer
