/* Signal and task state a dump must record: 3 threads; a SIGUSR2 handler with known flags
 * and mask; a blocked mask; a process-wide pending real-time signal and a thread-private
 * pending SIGUSR2; an alternate signal stack; an interval timer; rlimit, umask,
 * parent-death signal, child-subreaper flag. After SIGUSR1 it delivers the pending
 * signals and checks that they arrive. */
#include "wl.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>

static volatile sig_atomic_t got_usr2, got_rt;
static volatile int rt_value;
static pid_t tids[3];
static char altstack[65536];

static void on_usr2(int sig, siginfo_t* si, void* uc) {
  (void)sig; (void)si; (void)uc;
  got_usr2 = 1;
}
static void on_rt(int sig, siginfo_t* si, void* uc) {
  (void)sig; (void)uc;
  got_rt = 1;
  rt_value = si->si_value.sival_int;
}

static void* thread_main(void* arg) {
  tids[(intptr_t)arg] = (pid_t)syscall(SYS_gettid);
  for (;;) pause();
  return NULL;
}

int main(void) {
  wl_init();
  tids[0] = getpid();
  /* The threads inherit the mask: SIGUSR1 (wl_init), SIGUSR2 and SIGRTMIN+1 blocked. */
  sigset_t blk;
  sigemptyset(&blk);
  sigaddset(&blk, SIGUSR2);
  sigaddset(&blk, SIGRTMIN + 1);
  sigprocmask(SIG_BLOCK, &blk, NULL);
  pthread_t th[2];
  for (intptr_t i = 1; i <= 2; ++i) WL_MUST(pthread_create(&th[i - 1], NULL, thread_main, (void*)i) == 0);
  while (!tids[1] || !tids[2]) usleep(1000);

  struct sigaction sa = {0};
  sa.sa_sigaction = on_usr2;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  WL_MUST(sigaction(SIGUSR2, &sa, NULL) == 0);
  struct sigaction rt = {0};
  rt.sa_sigaction = on_rt;
  rt.sa_flags = SA_SIGINFO;
  WL_MUST(sigaction(SIGRTMIN + 1, &rt, NULL) == 0);
  WL_MUST(signal(SIGPIPE, SIG_IGN) != SIG_ERR);

  /* Pending: SIGRTMIN+1 for the process with a value, SIGUSR2 for the main thread only. */
  union sigval v = {.sival_int = 4242};
  WL_MUST(sigqueue(getpid(), SIGRTMIN + 1, v) == 0);
  WL_MUST(syscall(SYS_tgkill, getpid(), getpid(), SIGUSR2) == 0);

  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
  WL_MUST(sigaltstack(&ss, NULL) == 0);
  /* ITIMER_VIRTUAL counts CPU time only: it will not fire while we wait. */
  struct itimerval it = {.it_interval = {1000, 500}, .it_value = {2000, 0}};
  WL_MUST(setitimer(ITIMER_VIRTUAL, &it, NULL) == 0);
  struct rlimit rl = {777, 888};
  WL_MUST(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  umask(027);
  WL_MUST(prctl(PR_SET_PDEATHSIG, SIGHUP) == 0);
  WL_MUST(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);

  printf("READY {\"pid\": %d, \"tids\": [%d, %d, %d], \"handler\": %lu, \"rt_handler\": %lu, "
         "\"usr2\": %d, \"rt\": %d, \"altstack\": %lu, \"altsize\": %zu}\n",
         getpid(), tids[0], tids[1], tids[2], (unsigned long)on_usr2, (unsigned long)on_rt,
         SIGUSR2, SIGRTMIN + 1, (unsigned long)altstack, sizeof(altstack));
  wl_wait_verify();
  sigprocmask(SIG_UNBLOCK, &blk, NULL);
  WL_CHECK(got_usr2, "the pending SIGUSR2 was not delivered");
  WL_CHECK(got_rt && rt_value == 4242, "the pending SIGRTMIN+1 was not delivered (value %d)", rt_value);
  stack_t now;
  sigaltstack(NULL, &now);
  WL_CHECK(now.ss_sp == altstack && now.ss_size == sizeof(altstack), "sigaltstack");
  return wl_finish();
}
