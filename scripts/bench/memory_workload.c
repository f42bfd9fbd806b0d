/* Benchmark workload: MiB of random anonymous memory in each of `procs` processes (the
 * root and procs-1 children). Prints "READY pid" and sleeps. */
#define _GNU_SOURCE
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void fill(size_t bytes, unsigned long seed) {
  unsigned long* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  unsigned long x = seed | 1;
  for (size_t i = 0; i < bytes / 8; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = x;
  }
}

int main(int argc, char** argv) {
  close_range(3, ~0U, 0);
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
  int procs = argc > 2 ? atoi(argv[2]) : 1;
  for (int i = 1; i < procs; i++) {
    if (fork() == 0) {
      fill(mib << 20, (unsigned long)i * 7919);
      for (;;) pause();
    }
  }
  fill(mib << 20, 88172645463325252ull);
  usleep(100000); /* let the children finish filling */
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
