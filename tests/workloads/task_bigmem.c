/* 256 MiB (or argv[1] MiB) of pseudo-random anonymous memory with a checksum taken before
 * READY. Restored, every byte must be back: the checksum is computed again over the whole
 * area. */
#include "wl.h"

#include <stdint.h>
#include <sys/mman.h>

static uint64_t sum(const uint64_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

int main(int argc, char** argv) {
  wl_init();
  size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 256;
  size_t n = mib * (1 << 20) / 8;
  uint64_t* p = mmap(NULL, n * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(p != MAP_FAILED);
  uint64_t x = 88172645463325252ull ^ (uint64_t)getpid();
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = x;
  }
  uint64_t before = sum(p, n);
  printf("READY {\"pid\": %d, \"mib\": %zu, \"sum\": \"%016llx\"}\n", getpid(), mib,
         (unsigned long long)before);
  wl_wait_verify();
  uint64_t after = sum(p, n);
  WL_CHECK(after == before, "checksum %016llx, was %016llx", (unsigned long long)after,
           (unsigned long long)before);
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
