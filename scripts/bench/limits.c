/* This machine's limits, for the benchmarks to compare against:
 *   memcpy   MB/s of memcpy between two 256 MiB buffers already faulted in
 *   touch    MB/s of memset on freshly mmapped anonymous memory (first touch: page faults
 *            included) — the lowest cost of filling new memory, which a restore cannot beat
 * Prints "memcpy_mbs N" and "touch_mbs N". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void) {
  const size_t sz = 256u << 20;
  char* a = malloc(sz);
  char* b = malloc(sz);
  memset(a, 1, sz);
  memset(b, 2, sz);
  double best = 1e9;
  for (int i = 0; i < 5; i++) {
    double t = now();
    memcpy(b, a, sz);
    t = now() - t;
    if (t < best) best = t;
  }
  printf("memcpy_mbs %.0f\n", sz / best / 1e6);
  best = 1e9;
  for (int i = 0; i < 5; i++) {
    char* m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double t = now();
    memset(m, 3, sz);
    t = now() - t;
    munmap(m, sz);
    if (t < best) best = t;
  }
  printf("touch_mbs %.0f\n", sz / best / 1e6);
  return b[12345] == 1 ? 0 : 1;
}
