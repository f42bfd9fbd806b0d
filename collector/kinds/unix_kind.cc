#include "collector/kinds/unix_kind.h"

#include <sys/stat.h>

namespace crpipe::collector {

bool UnixSocketKind::matches(const OpenFile& f) const {
  return S_ISSOCK(f.st.st_mode);
}

Status UnixSocketKind::collect(DumpContext&, OpenFile& f, uint32_t) {
  return failMsg(f.where() + ": unix sockets are not collected yet");
}

}  // namespace crpipe::collector
