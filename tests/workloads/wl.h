/* Shared by the test workloads. A workload builds some state, prints one line
 * "READY {json}" on stdout (a log file the harness reads), waits for SIGUSR1, checks that
 * its state survived, prints PASS or FAIL with a reason, and exits 0 or 1.
 * stdout is line-buffered to a regular file so the workload holds no pipe to the harness. */
#pragma once

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int wl_failed;

static inline void wl_init(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  /* Blocked in every process of the tree (inherited by fork), taken with sigwaitinfo. */
  sigprocmask(SIG_BLOCK, &s, NULL);
}

static inline void wl_wait_verify(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  for (;;) {
    int r = sigwaitinfo(&s, NULL);
    if (r == SIGUSR1) return;
    if (r < 0 && errno != EINTR) {
      printf("FAIL sigwaitinfo: %s\n", strerror(errno));
      exit(1);
    }
  }
}

/* Records a failed check; the workload goes on to report every failure. */
#define WL_CHECK(cond, ...)                          \
  do {                                               \
    if (!(cond)) {                                   \
      printf("check failed at %s:%d: ", __FILE__, __LINE__); \
      printf(__VA_ARGS__);                           \
      printf("\n");                                  \
      wl_failed = 1;                                 \
    }                                                \
  } while (0)

/* For setup steps that must work. */
#define WL_MUST(expr)                                                   \
  do {                                                                  \
    if (!(expr)) {                                                      \
      printf("FAIL setup %s at %s:%d: %s\n", #expr, __FILE__, __LINE__, strerror(errno)); \
      exit(1);                                                          \
    }                                                                   \
  } while (0)

static inline int wl_finish(void) {
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed ? 1 : 0;
}
