#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace crpipe {

// CRIU's VMA status bits (VmaEntry.status, criu/include/image.h): part of the image ABI,
// shared by the dump (collector/task) and the restore (coordinator/inject).
inline constexpr uint32_t kVmaRegular = 1 << 0;
inline constexpr uint32_t kVmaStack = 1 << 1;
inline constexpr uint32_t kVmaVsyscall = 1 << 2;
inline constexpr uint32_t kVmaVdso = 1 << 3;
inline constexpr uint32_t kVmaHeap = 1 << 5;
inline constexpr uint32_t kVmaFilePrivate = 1 << 6;
inline constexpr uint32_t kVmaFileShared = 1 << 7;
inline constexpr uint32_t kVmaAnonShared = 1 << 8;
inline constexpr uint32_t kVmaAnonPrivate = 1 << 9;
inline constexpr uint32_t kVmaVvar = 1 << 12;

// "0x7f00": how errors name an address.
inline std::string hexAddr(uint64_t a) {
  char b[32];
  snprintf(b, sizeof(b), "0x%llx", static_cast<unsigned long long>(a));
  return b;
}

// "7f00-7f10": how errors name a mapping, as /proc/PID/maps writes it.
inline std::string hexRange(uint64_t start, uint64_t end) {
  char b[64];
  snprintf(b, sizeof(b), "%llx-%llx", static_cast<unsigned long long>(start),
           static_cast<unsigned long long>(end));
  return b;
}

}  // namespace crpipe
