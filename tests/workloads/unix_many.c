/* Many sockets in one task (issue 5, restore within RLIMIT_NOFILE): argv[1] socketpairs,
 * each end with its own queued bytes naming its index, under RLIMIT_NOFILE of 2 * argv[1]
 * + 64 (the task's fds take almost all of it), at fd numbers in the reverse order of their
 * making. After restore every fd is checked: same
 * number, still the other end's peer, its bytes in its queue. */
#include "wl.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>

int main(int argc, char** argv) {
  wl_init();
  WL_MUST(argc == 2);
  const int n = atoi(argv[1]);
  struct rlimit rl = {(rlim_t)(4 * n + 64), (rlim_t)(4 * n + 64)};
  WL_MUST(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  int* fds = calloc((size_t)(2 * n), sizeof(int));
  WL_MUST(fds != NULL);
  for (int i = 0; i < n; ++i) {
    WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, &fds[2 * i]) == 0);
    char msg[32];
    int len = snprintf(msg, sizeof(msg), "to-%d", 2 * i + 1);
    WL_MUST(send(fds[2 * i], msg, (size_t)len, 0) == len);
    len = snprintf(msg, sizeof(msg), "to-%d", 2 * i);
    WL_MUST(send(fds[2 * i + 1], msg, (size_t)len, 0) == len);
  }
  /* Reversed fd order, so that a restore making them in order does not find each at its
   * number by chance: socket i goes from fd fds[i] to the fd of socket 2n-1-i. */
  int* high = calloc((size_t)(2 * n), sizeof(int));
  WL_MUST(high != NULL);
  for (int i = 0; i < 2 * n; ++i) {
    high[i] = fcntl(fds[i], F_DUPFD, 3 + 2 * n + 16);
    WL_MUST(high[i] >= 0);
  }
  int* slots = calloc((size_t)(2 * n), sizeof(int));
  WL_MUST(slots != NULL);
  for (int i = 0; i < 2 * n; ++i) {
    slots[i] = fds[i];
  }
  for (int i = 0; i < 2 * n; ++i) {
    fds[i] = slots[2 * n - 1 - i];
    WL_MUST(dup2(high[i], fds[i]) == fds[i]);
  }
  for (int i = 0; i < 2 * n; ++i) {
    close(high[i]);
  }
  rl.rlim_cur = rl.rlim_max = (rlim_t)(2 * n + 64);
  WL_MUST(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  printf("READY {\"pid\": %d, \"fds\": %d, \"limit\": %d}\n", getpid(), 2 * n, 2 * n + 64);

  wl_wait_verify();
  for (int i = 0; i < 2 * n; ++i) {
    char want[32], got[32] = {0};
    int len = snprintf(want, sizeof(want), "to-%d", i);
    ssize_t r = recv(fds[i], got, sizeof(got) - 1, MSG_DONTWAIT);
    WL_CHECK(r == len && memcmp(got, want, (size_t)len) == 0, "fd %d (socket %d): '%s', want '%s'",
             fds[i], i, got, want);
    if (wl_failed) break;
  }
  for (int i = 0; i < n && !wl_failed; ++i) {
    WL_CHECK(send(fds[2 * i], "p", 1, 0) == 1, "pair %d: send", i);
    char c = 0;
    WL_CHECK(recv(fds[2 * i + 1], &c, 1, MSG_DONTWAIT) == 1 && c == 'p', "pair %d: not a pair", i);
  }
  return wl_finish();
}
