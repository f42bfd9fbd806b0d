/* Many sockets in one task (issue 5, restore within RLIMIT_NOFILE): argv[1] socketpairs,
 * each end with its own queued bytes naming its index, under RLIMIT_NOFILE of 2 * argv[1]
 * + 64 (the task's fds take almost all of it), at fd numbers in the reverse order of their
 * making. After restore every fd is checked: same
 * number, still the other end's peer, its bytes in its queue.
 * Plus a few sockets unlike the rest (the kinds of state the collector reads through the
 * fd-table iterator when the table is large, or falls back to syscalls for): options and a
 * peek offset, credentials, datagram and seqpacket queues with zero-length messages, a
 * socket held by two fds, owners, a classic BPF filter; checked after restore too. */
#include "wl.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>

/* The odd sockets: numbers saved across the restore (the task keeps its memory). */
static int e1, e2, e2dup, d1, d2, q1, q2;
/* With "midzero": a datagram socket whose empty message sits between two others, which a
 * second peek of the queue no longer sees (so only for a test that dumps once). */
static int z1 = -1, z2 = -1;

static void odd_sockets(void) {
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0);
  e1 = p[0];
  e2 = p[1];
  e2dup = dup(e2);
  WL_MUST(e2dup >= 0);
  struct timeval tv = {1, 500000};
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
  tv.tv_sec = 3;
  tv.tv_usec = 0;
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0);
  int v = 3;
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_PRIORITY, &v, sizeof(v)) == 0);
  v = 2;
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0);
  v = 1;
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof(v)) == 0);
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_PASSCRED, &v, sizeof(v)) == 0);
  struct linger lg = {1, 7};
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
  WL_MUST(send(e2, "hel", 3, 0) == 3 && send(e2, "lo", 2, 0) == 2);
  v = 1;
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v)) == 0);
  WL_MUST(send(e1, "back", 4, 0) == 4);

  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM, 0, p) == 0);
  d1 = p[0];
  d2 = p[1];
  v = 65536;
  WL_MUST(setsockopt(d1, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) == 0);
  /* The zero-length messages first: a peek walks the rest at an offset, which skips the
   * zero-length ones an earlier peek passed (the test dumps this task three times). */
  WL_MUST(send(d2, "", 0, 0) == 0 && send(d2, "two", 3, 0) == 3 && send(d2, "three", 5, 0) == 5);
  WL_MUST(fcntl(d2, F_SETSIG, 12) == 0);

  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, p) == 0);
  q1 = p[0];
  q2 = p[1];
  WL_MUST(send(q2, "", 0, 0) == 0 && send(q2, "rec2", 4, 0) == 4 && send(q2, "rec3", 4, 0) == 4);
  WL_MUST(fcntl(q2, F_SETOWN, getpid()) == 0);
  struct sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0xffff}};
  struct sock_fprog prog = {1, code};
  WL_MUST(setsockopt(q2, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == 0);
}

static void midzero_socket(void) {
  int p[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM, 0, p) == 0);
  z1 = p[0];
  z2 = p[1];
  WL_MUST(send(z2, "first", 5, 0) == 5 && send(z2, "", 0, 0) == 0 && send(z2, "last", 4, 0) == 4);
}

static void check_recv(int fd, const char* want, int len, const char* what) {
  char got[64] = {0};
  ssize_t r = recv(fd, got, sizeof(got), MSG_DONTWAIT);
  WL_CHECK(r == len && memcmp(got, want, (size_t)len) == 0, "%s: got %zd '%s', want '%s'",
           what, r, got, want);
}

static void check_odd_sockets(void) {
  int v = 0;
  socklen_t len = sizeof(v);
  WL_CHECK(getsockopt(e1, SOL_SOCKET, SO_PRIORITY, &v, &len) == 0 && v == 3, "e1 priority %d", v);
  struct timeval tv = {0, 0};
  len = sizeof(tv);
  WL_CHECK(getsockopt(e1, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) == 0 && tv.tv_sec == 1 &&
               tv.tv_usec == 500000, "e1 rcvtimeo %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
  struct linger lg = {0, 0};
  len = sizeof(lg);
  WL_CHECK(getsockopt(e1, SOL_SOCKET, SO_LINGER, &lg, &len) == 0 && lg.l_onoff && lg.l_linger == 7,
           "e1 linger %d %d", lg.l_onoff, lg.l_linger);
  len = sizeof(v);
  WL_CHECK(getsockopt(e1, SOL_SOCKET, SO_PEEK_OFF, &v, &len) == 0 && v == 1, "e1 peek off %d", v);
  v = -1;
  WL_MUST(setsockopt(e1, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v)) == 0);
  check_recv(e1, "hello", 5, "e1 queue");
  check_recv(e2dup, "back", 4, "e2 queue (through its second fd)");
  WL_CHECK(fcntl(d2, F_GETSIG) == 12, "d2 F_GETSIG %d", fcntl(d2, F_GETSIG));
  WL_CHECK(fcntl(q2, F_GETOWN) == getpid(), "q2 owner %d", fcntl(q2, F_GETOWN));
  check_recv(d1, "", 0, "d1 zero-length datagram");
  check_recv(d1, "two", 3, "d1 second datagram");
  check_recv(d1, "three", 5, "d1 third datagram");
  check_recv(q1, "", 0, "q1 zero-length record");
  check_recv(q1, "rec2", 4, "q1 second record");
  check_recv(q1, "rec3", 4, "q1 third record");
  if (z1 >= 0) {
    check_recv(z1, "first", 5, "z1 first datagram");
    check_recv(z1, "", 0, "z1 empty datagram between two others");
    check_recv(z1, "last", 4, "z1 last datagram");
  }
}

int main(int argc, char** argv) {
  wl_init();
  WL_MUST(argc == 2 || (argc == 3 && strcmp(argv[2], "midzero") == 0));
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
  odd_sockets();
  if (argc == 3) {
    midzero_socket();
  }
  rl.rlim_cur = rl.rlim_max = (rlim_t)(2 * n + 64);
  WL_MUST(setrlimit(RLIMIT_NOFILE, &rl) == 0);
  printf("READY {\"pid\": %d, \"fds\": %d, \"limit\": %d}\n", getpid(), 2 * n, 2 * n + 64);

  wl_wait_verify();
  check_odd_sockets();
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
