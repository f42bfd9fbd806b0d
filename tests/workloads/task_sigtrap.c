/* SIGTRAP in every state the collector's injected syscalls must leave as they are: the
 * root catches it (a handler with SA_SIGINFO | SA_RESTART and a mask), child A ignores it,
 * child B has one blocked and pending (queued with a value). The collector single-steps over its injected
 * syscalls only in a task like the root (the step raises a SIGTRAP it discards; the kernel
 * resets the handler of a blocked or ignored SIGTRAP it forces), and takes two stops a
 * syscall in A and B. After SIGUSR1 each checks its SIGTRAP is as it set it up. */
#include "wl.h"

#include <sys/wait.h>

static volatile sig_atomic_t got_trap;

static void on_trap(int sig, siginfo_t* si, void* uc) {
  (void)sig; (void)si; (void)uc;
  got_trap = 1;
}

static void check_ignored(void) {
  struct sigaction sa;
  WL_MUST(sigaction(SIGTRAP, NULL, &sa) == 0);
  WL_CHECK(sa.sa_handler == SIG_IGN, "child A: SIGTRAP is no longer ignored");
  raise(SIGTRAP);  /* ignored: nothing happens */
}

static void check_pending(void) {
  sigset_t pend;
  WL_MUST(sigpending(&pend) == 0);
  WL_CHECK(sigismember(&pend, SIGTRAP), "child B: the pending SIGTRAP is gone");
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGTRAP);
  struct timespec zero = {0, 0};
  siginfo_t si;
  int r = sigtimedwait(&s, &si, &zero);
  WL_CHECK(r == SIGTRAP && si.si_code == SI_QUEUE && si.si_pid == getpid() &&
               si.si_value.sival_int == 4242,
           "child B: pending SIGTRAP %d code %d pid %d value %d", r, si.si_code, si.si_pid,
           si.si_value.sival_int);
}

static pid_t start_child(int which) {
  pid_t p = fork();
  WL_MUST(p >= 0);
  if (p != 0) return p;
  if (which == 0) {
    WL_MUST(signal(SIGTRAP, SIG_IGN) != SIG_ERR);
  } else {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTRAP);
    WL_MUST(sigprocmask(SIG_BLOCK, &s, NULL) == 0);
    /* Queued with a value: a SIGTRAP taken and sent again would lose it. */
    WL_MUST(sigqueue(getpid(), SIGTRAP, (union sigval){.sival_int = 4242}) == 0);
  }
  wl_wait_verify();
  if (which == 0) check_ignored(); else check_pending();
  exit(wl_failed ? 1 : 0);
}

int main(void) {
  wl_init();
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_trap;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);
  WL_MUST(sigaction(SIGTRAP, &sa, NULL) == 0);
  pid_t a = start_child(0);
  pid_t b = start_child(1);
  printf("READY {\"pid\": %d, \"ignoring\": %d, \"pending\": %d}\n", getpid(), a, b);
  wl_wait_verify();

  struct sigaction now;
  WL_MUST(sigaction(SIGTRAP, NULL, &now) == 0);
  WL_CHECK(now.sa_sigaction == on_trap, "root: SIGTRAP handler %p", (void*)now.sa_sigaction);
  WL_CHECK((now.sa_flags & (SA_SIGINFO | SA_RESTART)) == (SA_SIGINFO | SA_RESTART),
           "root: SIGTRAP flags %#x", now.sa_flags);
  WL_CHECK(sigismember(&now.sa_mask, SIGINT), "root: SIGTRAP handler mask lost SIGINT");
  sigset_t pend;
  WL_MUST(sigpending(&pend) == 0);
  WL_CHECK(!sigismember(&pend, SIGTRAP), "root: a SIGTRAP is pending that nobody sent");
  raise(SIGTRAP);
  WL_CHECK(got_trap, "root: the SIGTRAP handler did not run");

  int ok = 1;
  for (int i = 0; i < 2; ++i) {
    pid_t c = i == 0 ? a : b;
    kill(c, SIGUSR1);
    int st = 0;
    WL_MUST(waitpid(c, &st, 0) == c);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("check failed: child %d ended with status %#x\n", c, st);
      ok = 0;
    }
  }
  if (!ok) wl_failed = 1;
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed ? 1 : 0;
}
