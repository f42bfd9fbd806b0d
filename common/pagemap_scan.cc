#include "common/pagemap_scan.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/unique_fd.h"

namespace crpipe {

bool pagemapScanAvailable() {
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return false;
  }
  static char probe;  // a page of this process's data
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t at = reinterpret_cast<uint64_t>(&probe) / page * page;
  PageRegion vec[1];
  PmScanArg arg{};
  arg.size = sizeof(arg);
  arg.start = at;
  arg.end = at + page;
  arg.vec = reinterpret_cast<uint64_t>(vec);
  arg.vecLen = 1;
  arg.categoryAnyofMask = kPageIsPresent | kPageIsSwapped;
  return ::ioctl(fd.get(), kPagemapScan, &arg) >= 0;
}

}  // namespace crpipe
