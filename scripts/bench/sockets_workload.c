/* Benchmark workload: N unix sockets (N/2 stream socketpairs) in one process, 4 KiB queued
 * in each socket. Prints "READY pid" on stdout and sleeps. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <linux/close_range.h>
#include <unistd.h>

int main(int argc, char** argv) {
  /* Whatever the caller leaked to us (a shell's pipes) would be outside the dumped tree. */
  close_range(3, ~0U, 0);
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  int queued = argc > 2 ? atoi(argv[2]) : 4096;
  struct rlimit rl = {(rlim_t)n + 64, (rlim_t)n + 64};
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
    perror("setrlimit");
    return 1;
  }
  char* buf = malloc(queued);
  memset(buf, 'x', queued);
  for (int i = 0; i < n / 2; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
      perror("socketpair");
      return 1;
    }
    if (write(sv[0], buf, queued) != queued || write(sv[1], buf, queued) != queued) {
      perror("write");
      return 1;
    }
  }
  printf("READY %d\n", getpid());
  fflush(stdout);
  for (;;) pause();
}
