#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace crpipe {

// PAGEMAP_SCAN (Linux 6.7, include/uapi/linux/fs.h; Debian 12's headers predate it): an
// ioctl on /proc/PID/pagemap with which the kernel walks the page table and returns the
// runs of pages whose categories match.
inline constexpr uint64_t kPageIsFile = 1 << 2;
inline constexpr uint64_t kPageIsPresent = 1 << 3;
inline constexpr uint64_t kPageIsSwapped = 1 << 4;
inline constexpr uint64_t kPageIsPfnZero = 1 << 5;

struct PageRegion {
  uint64_t start, end, categories;
};

struct PmScanArg {
  uint64_t size, flags, start, end, walkEnd, vec, vecLen, maxPages;
  uint64_t categoryInverted, categoryMask, categoryAnyofMask, returnMask;
};

inline constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);

// Whether this kernel answers PAGEMAP_SCAN (asked about one page of this process).
bool pagemapScanAvailable();

}  // namespace crpipe
