/* Unix sockets of another network namespace (issue 5 item 6). argv[1]: a named network
 * namespace (/run/netns/NAME). A child joins it with setns and makes there a listener with
 * an abstract name, an accepted connection with queued data, and a socketpair with queued
 * data. After restore the child checks that every socket is still in that namespace
 * (SIOCGSKNS), the queues and the name, and that a new client made in the namespace can
 * still connect; the parent (in the root namespace) checks the abstract name is not
 * visible there. */
#include "unix_ux.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stddef.h>
#include <sys/wait.h>

static struct sockaddr_un name;
static socklen_t namelen;

static unsigned long ns_of(int fd) {
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns < 0) return 0;
  struct stat st;
  unsigned long ino = fstat(ns, &st) == 0 ? (unsigned long)st.st_ino : 0;
  close(ns);
  return ino;
}

static int child(const char* nspath, unsigned long nsino, int ready) {
  int ns = open(nspath, O_RDONLY | O_CLOEXEC);
  WL_MUST(ns >= 0);
  WL_MUST(setns(ns, CLONE_NEWNET) == 0);
  close(ns);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(l >= 0);
  WL_MUST(bind(l, (struct sockaddr*)&name, namelen) == 0);
  WL_MUST(listen(l, 8) == 0);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(connect(c, (struct sockaddr*)&name, namelen) == 0);
  int a = accept(l, NULL, NULL);
  WL_MUST(a >= 0);
  WL_MUST(send(c, "over-accept", 11, 0) == 11);
  int sp[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  WL_MUST(send(sp[0], "hello-netns", 11, 0) == 11);
  WL_MUST(write(ready, "r", 1) == 1);
  close(ready);

  wl_wait_verify();
  int fds[] = {l, c, a, sp[0], sp[1]};
  for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); ++i) {
    unsigned long got = ns_of(fds[i]);
    WL_CHECK(got == nsino, "fd %d: socket in netns %lu, want %lu", fds[i], got, nsino);
  }
  ux_expect_now(a, "over-accept");
  ux_expect_now(sp[1], "hello-netns");
  struct sockaddr_un sn;
  socklen_t sl = sizeof(sn);
  WL_CHECK(getsockname(l, (struct sockaddr*)&sn, &sl) == 0 && sl == namelen &&
               memcmp(&sn, &name, namelen) == 0, "listener lost its abstract name");
  /* A new client made in the namespace reaches the listener by name. */
  int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  ns = open(nspath, O_RDONLY | O_CLOEXEC);
  WL_MUST(own >= 0 && ns >= 0);
  WL_MUST(setns(ns, CLONE_NEWNET) == 0);
  int n = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(setns(own, CLONE_NEWNET) == 0);
  WL_CHECK(connect(n, (struct sockaddr*)&name, namelen) == 0, "connect in the netns: %s",
           strerror(errno));
  int na = accept4(l, NULL, NULL, SOCK_NONBLOCK);
  WL_CHECK(na >= 0, "accept of a new connection: %s", strerror(errno));
  WL_CHECK(send(n, "x", 1, 0) == 1 && na >= 0, "send on the new connection");
  if (na >= 0) ux_expect_now(na, "x");
  WL_CHECK(send(sp[1], "back", 4, 0) == 4, "send on the pair");
  ux_expect_now(sp[0], "back");
  return wl_failed;
}

int main(int argc, char** argv) {
  wl_init();
  WL_MUST(argc == 2);
  struct stat nst;
  WL_MUST(stat(argv[1], &nst) == 0);
  name.sun_family = AF_UNIX;
  int len = snprintf(name.sun_path + 1, sizeof(name.sun_path) - 1, "crpipe-netns-%d", getpid());
  namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
  int p[2];
  WL_MUST(pipe(p) == 0);
  pid_t c = fork();
  WL_MUST(c >= 0);
  if (c == 0) {
    close(p[0]);
    exit(child(argv[1], (unsigned long)nst.st_ino, p[1]));
  }
  close(p[1]);
  char b;
  WL_MUST(read(p[0], &b, 1) == 1);
  close(p[0]);
  printf("READY {\"pid\": %d, \"child\": %d, \"netns_ino\": %lu}\n", getpid(), c,
         (unsigned long)nst.st_ino);

  wl_wait_verify();
  /* The abstract name lives in the child's namespace only. */
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(s >= 0);
  WL_CHECK(connect(s, (struct sockaddr*)&name, namelen) < 0 && errno == ECONNREFUSED,
           "the abstract name is visible in the root network namespace");
  kill(c, SIGUSR1);
  int st = 0;
  WL_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "the child in the namespace failed (status 0x%x)", st);
  return wl_finish();
}
