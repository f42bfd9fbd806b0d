#include "collector/kinds/registry.h"

#include "collector/kinds/pipe_kind.h"
#include "collector/kinds/regfile_kind.h"
#include "collector/kinds/unix_kind.h"

namespace crpipe::collector {

std::vector<std::unique_ptr<FdKind>> makeFdKinds() {
  std::vector<std::unique_ptr<FdKind>> kinds;
  kinds.push_back(std::make_unique<UnixSocketKind>());
  kinds.push_back(std::make_unique<PipeKind>());  // pipes and FIFOs
  kinds.push_back(std::make_unique<RegFileKind>());  // files, directories, devices by path
  return kinds;
}

}  // namespace crpipe::collector
