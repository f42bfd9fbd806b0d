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
  int ready[2];
  if (pipe(ready) != 0) {
    perror("pipe");
    return 1;
  }
  for (int i = 1; i < procs; i++) {
    if (fork() == 0) {
      close(ready[0]);
      fill(mib << 20, (unsigned long)i * 7919);
      if (write(ready[1], "x", 1) != 1) _exit(1);
      close(ready[1]);
      for (;;) pause();
    }
  }
  close(ready[1]);
  fill(mib << 20, 88172645463325252ull);
  /* Every child filled its memory (a fixed sleep was not enough on a busy machine). */
  char c;
  for (int i = 1; i < procs; i++) {
    if (read(ready[0], &c, 1) != 1) {
      perror("read");
      return 1;
    }
  }
  close(ready[0]);
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
