/* Sessions and process groups inside the tree (issue 4: "with the same sessions and process
 * groups"): child A starts a session of its own; in it, A1 leads a new process group and A2
 * joins A1's group; child B leads a new group in the root's session. Everyone waits. After
 * restore the root asks the kernel the session and group of each (getsid/getpgid work for
 * any pid) and checks them against what it saw before READY, then stops them all. */
#include "wl.h"

#include <sys/wait.h>

static void wait_forever(void) {
  for (;;) pause();
}

int main(void) {
  wl_init();
  int sync[2];
  WL_MUST(pipe(sync) == 0);
  pid_t a = fork();
  WL_MUST(a >= 0);
  if (a == 0) {
    WL_MUST(setsid() == getpid());
    pid_t a1 = fork();
    WL_MUST(a1 >= 0);
    if (a1 == 0) {
      WL_MUST(setpgid(0, 0) == 0);
      wait_forever();
    }
    WL_MUST(setpgid(a1, a1) == 0 || errno == EACCES);  /* whoever gets there first */
    pid_t a2 = fork();
    WL_MUST(a2 >= 0);
    if (a2 == 0) {
      WL_MUST(setpgid(0, a1) == 0);
      wait_forever();
    }
    WL_MUST(setpgid(a2, a1) == 0 || errno == EACCES);
    pid_t kids[2] = {a1, a2};
    WL_MUST(write(sync[1], kids, sizeof(kids)) == sizeof(kids));
    wait_forever();
  }
  pid_t b = fork();
  WL_MUST(b >= 0);
  if (b == 0) {
    WL_MUST(setpgid(0, 0) == 0);
    wait_forever();
  }
  WL_MUST(setpgid(b, b) == 0 || errno == EACCES);
  pid_t kids[2];
  WL_MUST(read(sync[0], kids, sizeof(kids)) == sizeof(kids));
  pid_t all[5] = {getpid(), a, kids[0], kids[1], b};
  pid_t sid[5], pgid[5];
  /* The groups are settled once every setpgid above returned: A's children are told apart
   * only once they ran theirs; wait until the kernel shows them. */
  for (int tries = 0;; ++tries) {
    int settled = getpgid(kids[0]) == kids[0] && getpgid(kids[1]) == kids[0] &&
                  getpgid(b) == b;
    if (settled) break;
    WL_MUST(tries < 1000);
    usleep(1000);
  }
  for (int i = 0; i < 5; ++i) {
    sid[i] = getsid(all[i]);
    pgid[i] = getpgid(all[i]);
    WL_MUST(sid[i] > 0 && pgid[i] > 0);
  }
  WL_MUST(sid[1] == a && sid[2] == a && sid[3] == a && sid[4] == sid[0]);
  WL_MUST(pgid[2] == kids[0] && pgid[3] == kids[0] && pgid[4] == b);
  printf("READY {\"pid\": %d, \"a\": %d, \"a1\": %d, \"a2\": %d, \"b\": %d, \"sid_a\": %d}\n",
         getpid(), a, kids[0], kids[1], b, sid[1]);
  wl_wait_verify();
  static const char* names[5] = {"root", "A", "A1", "A2", "B"};
  for (int i = 0; i < 5; ++i) {
    pid_t s = getsid(all[i]), g = getpgid(all[i]);
    WL_CHECK(s == sid[i], "%s (pid %d): session %d after restore, was %d", names[i], all[i], s,
             sid[i]);
    WL_CHECK(g == pgid[i], "%s (pid %d): group %d after restore, was %d", names[i], all[i], g,
             pgid[i]);
  }
  for (int i = 1; i < 5; ++i) kill(all[i], SIGKILL);
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
  return wl_finish();
}
