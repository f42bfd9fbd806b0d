/* Signals on their way to a handler while the tree is frozen (issue 4: pending signals
 * delivered after restore). 8 threads each queue SIGRTMIN to themselves without pause
 * (rt_tgsigqueueinfo), carrying the thread's index and a sequence number 1, 2, 3 ...;
 * each signal is delivered as the syscall returns, so every thread spends much of its
 * time taking a signal from its queue — where the freeze may stop it (signal-delivery
 * stop), holding a signal it already took. Real-time signals are queued one by one and in
 * order, so after restore each thread must have handled every number from 1 to the
 * highest it handled, once: a signal the freeze took and did not keep leaves a gap. */
#include "wl.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

#define THREADS 16
#define MAXSEQ (1 << 20)
static unsigned char seen[THREADS][MAXSEQ];
static volatile int highest[THREADS], dups, bad;
static volatile int stop;

static void on_rt(int sig, siginfo_t* si, void* ctx) {
  (void)sig;
  (void)ctx;
  int v = si->si_value.sival_int;
  int t = v >> 24, s = v & 0xffffff;
  if (t < 0 || t >= THREADS || s <= 0 || s >= MAXSEQ) {
    bad++;
    return;
  }
  if (seen[t][s]) dups++;
  seen[t][s] = 1;
  if (s > highest[t]) highest[t] = s;
}

static void* storm(void* arg) {
  const int t = (int)(intptr_t)arg;
  const pid_t tid = (pid_t)syscall(SYS_gettid);
  for (int s = 1; s < MAXSEQ - 1 && !stop; ++s) {
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    si.si_signo = SIGRTMIN;
    si.si_code = SI_QUEUE;
    si.si_pid = getpid();
    si.si_uid = getuid();
    si.si_value.sival_int = (t << 24) | s;
    while (syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, SIGRTMIN, &si) != 0) {
      if (errno != EAGAIN) {
        printf("FAIL rt_tgsigqueueinfo: %s\n", strerror(errno));
        exit(1);
      }
    }
    if (s == MAXSEQ / 2) s = MAXSEQ / 2;  /* keep going; the dump comes long before */
  }
  return NULL;
}

int main(void) {
  wl_init();
  struct sigaction sa = {0};
  sa.sa_sigaction = on_rt;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  WL_MUST(sigaction(SIGRTMIN, &sa, NULL) == 0);
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; ++t) {
    WL_MUST(pthread_create(&th[t], NULL, storm, (void*)(intptr_t)t) == 0);
  }
  printf("READY {\"pid\": %d}\n", getpid());

  wl_wait_verify();
  stop = 1;
  for (int t = 0; t < THREADS; ++t) {
    pthread_join(th[t], NULL);
  }
  int gaps = 0;
  for (int t = 0; t < THREADS; ++t) {
    for (int s = 1; s <= highest[t]; ++s) {
      if (!seen[t][s]) {
        if (gaps++ == 0) printf("thread %d: signal #%d lost (highest %d)\n", t, s, highest[t]);
      }
    }
    WL_CHECK(highest[t] > 0, "thread %d handled no signal", t);
  }
  WL_CHECK(gaps == 0, "%d signals lost below the highest handled", gaps);
  WL_CHECK(dups == 0, "%d signals handled twice", dups);
  WL_CHECK(bad == 0, "%d signals without a thread and sequence number", bad);
  return wl_finish();
}
