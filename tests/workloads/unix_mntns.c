/* Unix socket files bound in another mount namespace (issue 5 item 6). argv[1]: a mount
 * namespace file (/proc/HOLDER/ns/mnt of a process the test keeps there), argv[2]: a
 * directory with a tmpfs mounted on it in that namespace only. A child joins the namespace
 * with setns and binds there: a stream listener in a subdirectory with an accepted
 * connection (data queued both ways) and a connection not yet accepted (with data), and a
 * datagram receiver with a bound client connected to it and a queued datagram.
 * After restore the child joins the namespace again and checks that each socket file is
 * there and is its socket's own file (SIOCUNIXFILE), the names, the queues, the sender
 * address of the datagram, the pending connection, and that a new client reaches the
 * listener by path; the parent checks that nothing was bound in its own namespace. */
#include "unix_ux.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (SIOCPROTOPRIVATE + 0)
#endif

static char lpath[108], dpath[108], cpath[108];

static socklen_t addr_of(const char* path, struct sockaddr_un* a) {
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  strcpy(a->sun_path, path);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static void enter(const char* nspath) {
  int ns = open(nspath, O_RDONLY | O_CLOEXEC);
  WL_MUST(ns >= 0);
  WL_MUST(setns(ns, CLONE_NEWNS) == 0);
  close(ns);
}

/* The file at path is the socket's own (same inode as SIOCUNIXFILE gives). */
static void check_file(int fd, const char* path) {
  struct stat there, mine;
  int f = ioctl(fd, SIOCUNIXFILE);
  WL_CHECK(f >= 0 && fstat(f, &mine) == 0, "SIOCUNIXFILE of %s: %s", path, strerror(errno));
  WL_CHECK(stat(path, &there) == 0 && S_ISSOCK(there.st_mode), "%s is not a socket file", path);
  if (f >= 0) {
    WL_CHECK(mine.st_ino == there.st_ino && mine.st_dev == there.st_dev,
             "%s is not the socket's own file", path);
    close(f);
  }
}

static void check_name(int fd, const char* path) {
  struct sockaddr_un a;
  socklen_t l = sizeof(a);
  WL_CHECK(getsockname(fd, (struct sockaddr*)&a, &l) == 0 && strcmp(a.sun_path, path) == 0,
           "getsockname: '%s', want '%s'", a.sun_path, path);
}

static int child(const char* nspath, const char* dir, int ready) {
  enter(nspath);
  char sub[108];
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  WL_MUST(mkdir(sub, 0755) == 0);
  struct sockaddr_un a;
  socklen_t al = addr_of(lpath, &a);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(l >= 0 && bind(l, (struct sockaddr*)&a, al) == 0 && listen(l, 8) == 0);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(c >= 0 && connect(c, (struct sockaddr*)&a, al) == 0);
  int acc = accept(l, NULL, NULL);
  WL_MUST(acc >= 0);
  WL_MUST(send(c, "to-server", 9, 0) == 9 && send(acc, "to-client", 9, 0) == 9);
  int pending = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(pending >= 0 && connect(pending, (struct sockaddr*)&a, al) == 0);
  WL_MUST(send(pending, "early", 5, 0) == 5);

  struct sockaddr_un da, ca;
  socklen_t dal = addr_of(dpath, &da), cal = addr_of(cpath, &ca);
  int d = socket(AF_UNIX, SOCK_DGRAM, 0);
  int dc = socket(AF_UNIX, SOCK_DGRAM, 0);
  WL_MUST(d >= 0 && dc >= 0 && bind(d, (struct sockaddr*)&da, dal) == 0);
  WL_MUST(bind(dc, (struct sockaddr*)&ca, cal) == 0 && connect(dc, (struct sockaddr*)&da, dal) == 0);
  WL_MUST(send(dc, "dgram", 5, 0) == 5);
  WL_MUST(write(ready, "r", 1) == 1);
  close(ready);

  wl_wait_verify();
  /* Restored in the restorer's mount namespace: the files are seen from the original. */
  enter(nspath);
  check_file(l, lpath);
  check_file(d, dpath);
  check_file(dc, cpath);
  check_name(l, lpath);
  check_name(acc, lpath);
  check_name(d, dpath);
  check_name(dc, cpath);
  ux_expect_now(acc, "to-server");
  ux_expect_now(c, "to-client");
  int p = accept4(l, NULL, NULL, SOCK_NONBLOCK);
  WL_CHECK(p >= 0, "the pending connection is gone: %s", strerror(errno));
  if (p >= 0) ux_expect_now(p, "early");
  struct sockaddr_un from;
  socklen_t fl = sizeof(from);
  char buf[16] = {0};
  ssize_t n = recvfrom(d, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr*)&from, &fl);
  WL_CHECK(n == 5 && memcmp(buf, "dgram", 5) == 0, "datagram: %zd '%s'", n, buf);
  WL_CHECK(n < 0 || strcmp(from.sun_path, cpath) == 0, "datagram from '%s', want '%s'",
           from.sun_path, cpath);
  WL_CHECK(send(dc, "again", 5, 0) == 5, "send on the connected datagram client: %s",
           strerror(errno));
  ux_expect_now(d, "again");
  int nc = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_CHECK(connect(nc, (struct sockaddr*)&a, al) == 0, "a new client cannot connect to %s: %s",
           lpath, strerror(errno));
  int na = accept4(l, NULL, NULL, SOCK_NONBLOCK);
  WL_CHECK(na >= 0, "accept of a new client: %s", strerror(errno));
  if (na >= 0) {
    WL_CHECK(send(nc, "x", 1, 0) == 1, "send on the new connection");
    ux_expect_now(na, "x");
  }
  return wl_failed;
}

int main(int argc, char** argv) {
  wl_init();
  WL_MUST(argc == 3);
  snprintf(lpath, sizeof(lpath), "%s/sub/listen.sock", argv[2]);
  snprintf(dpath, sizeof(dpath), "%s/dgram.sock", argv[2]);
  snprintf(cpath, sizeof(cpath), "%s/client.sock", argv[2]);
  struct stat nst;
  WL_MUST(stat(argv[1], &nst) == 0);
  int p[2];
  WL_MUST(pipe(p) == 0);
  pid_t c = fork();
  WL_MUST(c >= 0);
  if (c == 0) {
    close(p[0]);
    exit(child(argv[1], argv[2], p[1]));
  }
  close(p[1]);
  char b;
  WL_MUST(read(p[0], &b, 1) == 1);
  close(p[0]);
  printf("READY {\"pid\": %d, \"child\": %d, \"mntns_ino\": %lu}\n", getpid(), c,
         (unsigned long)nst.st_ino);

  wl_wait_verify();
  /* The directory is empty in this (the restorer's) namespace: nothing bound here. */
  struct stat st;
  WL_CHECK(stat(lpath, &st) < 0 && stat(dpath, &st) < 0 && stat(cpath, &st) < 0,
           "a socket file was bound in the wrong mount namespace");
  kill(c, SIGUSR1);
  int status = 0;
  WL_CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child in the mount namespace failed (status 0x%x)", status);
  return wl_finish();
}
