#include <fcntl.h>

#include "restorer/kinds/restore_kind.h"

namespace crpipe::restorer {

Status applyFown(int fd, const images::FownEntry& fown) {
  if (fown.pid() != 0) {
    f_owner_ex owner{};
    owner.type = static_cast<__pid_type>(fown.pid_type());
    owner.pid = static_cast<pid_t>(fown.pid());
    if (::fcntl(fd, F_SETOWN_EX, &owner) < 0) {
      return failSys("F_SETOWN_EX " + std::to_string(fown.pid()));
    }
  }
  if (fown.signum() != 0 && ::fcntl(fd, F_SETSIG, static_cast<int>(fown.signum())) < 0) {
    return failSys("F_SETSIG " + std::to_string(fown.signum()));
  }
  return {};
}

Result<UniqueFd> moveAbove(UniqueFd fd, int base) {
  if (fd.get() >= base) {
    return fd;
  }
  UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, base));
  if (!moved.valid()) {
    return failSys("F_DUPFD_CLOEXEC " + std::to_string(base));
  }
  return moved;
}

}  // namespace crpipe::restorer
