/* A parent that never waits for its exited child: the tree holds a zombie, which crpipe
 * refuses to dump (naming it) while leaving the parent running untouched. */
#include "wl.h"

#include <sys/wait.h>

int main(void) {
  wl_init();
  pid_t c = fork();
  WL_MUST(c >= 0);
  if (c == 0) {
    _exit(7);
  }
  /* Wait until the child is a zombie without reaping it. */
  siginfo_t si;
  WL_MUST(waitid(P_PID, c, &si, WEXITED | WNOWAIT) == 0);
  printf("READY {\"pid\": %d, \"zombie\": %d}\n", getpid(), c);
  wl_wait_verify();
  int status = 0;
  WL_CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 7,
           "the zombie's exit status changed");
  return wl_finish();
}
