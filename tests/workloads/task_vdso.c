/* clock_gettime through the vDSO after restore: the vDSO must be where the auxv says
 * (AT_SYSINFO_EHDR) and its clocks must agree with the kernel's own syscall. */
#include "wl.h"

#include <stdint.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>

static int64_t ns(const struct timespec* t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

int main(void) {
  wl_init();
  struct timespec a;
  clock_gettime(CLOCK_MONOTONIC, &a);
  printf("READY {\"pid\": %d, \"vdso\": %lu}\n", getpid(), getauxval(AT_SYSINFO_EHDR));
  wl_wait_verify();
  unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
  FILE* m = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long start = 0;
  while (m && fgets(line, sizeof line, m))
    if (strstr(line, "[vdso]")) start = strtoul(line, NULL, 16);
  if (m) fclose(m);
  WL_CHECK(start == vdso, "vdso mapped at %lx, auxv says %lx", start, vdso);
  for (int i = 0; i < 1000; ++i) {
    struct timespec v, k, v2;
    clock_gettime(CLOCK_MONOTONIC, &v);
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &k);
    clock_gettime(CLOCK_MONOTONIC, &v2);
    if (!(ns(&v) <= ns(&k) && ns(&k) <= ns(&v2))) {
      WL_CHECK(0, "vdso %lld, kernel %lld, vdso %lld", (long long)ns(&v), (long long)ns(&k),
               (long long)ns(&v2));
      break;
    }
  }
  struct timespec r, rk;
  clock_gettime(CLOCK_REALTIME, &r);
  syscall(SYS_clock_gettime, CLOCK_REALTIME, &rk);
  WL_CHECK(ns(&rk) - ns(&r) < 100000000 && ns(&rk) >= ns(&r), "realtime differs");
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
