/* Unix socket restore (issue 5): one tree holding each case the restore must bring back
 * exactly. Parent and child share a listener; the child's client is connected to an end
 * the parent accepted (names on both ends, SO_PEERCRED of two pids); two connections wait
 * unaccepted (one client closed); socketpairs with shutdown and a zero-length message; a
 * half-closed connection with data; a datagram receiver with an abstract name holding
 * embedded NULs and two clients (one named, one anonymous) with queued messages carrying
 * credentials; a datagram socket connected to itself; an autobound, a relative, a deleted,
 * a renamed socket and one in a directory the test removes before restore; options.
 * On SIGUSR1 (after a real restore) it checks names, peers and queued data itself. */
#include <fcntl.h>
#include <linux/filter.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "wl.h"

static char dir[256];

static socklen_t mkaddr(struct sockaddr_un* a, const char* name, size_t len) {
  memset(a, 0, sizeof(*a));
  a->sun_family = AF_UNIX;
  memcpy(a->sun_path, name, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int bound(int type, const char* name, size_t len) {
  int fd = socket(AF_UNIX, type, 0);
  struct sockaddr_un a;
  WL_MUST(fd >= 0);
  if (len > 0) WL_MUST(bind(fd, (struct sockaddr*)&a, mkaddr(&a, name, len)) == 0);
  return fd;
}

static void connect_to(int fd, const char* name, size_t len) {
  struct sockaddr_un a;
  WL_MUST(connect(fd, (struct sockaddr*)&a, mkaddr(&a, name, len)) == 0);
}

static void send_creds(int fd, const void* buf, size_t n) {
  struct iovec iov = {(void*)buf, n};
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  WL_MUST(sendmsg(fd, &mh, 0) == (ssize_t)n);
}

static void check_name(int fd, int peer, const char* want, size_t len, const char* what) {
  struct sockaddr_un a;
  socklen_t l = sizeof(a);
  int r = peer ? getpeername(fd, (struct sockaddr*)&a, &l) : getsockname(fd, (struct sockaddr*)&a, &l);
  size_t got = l - offsetof(struct sockaddr_un, sun_path);
  if (got > 0 && a.sun_path[0] != 0 && a.sun_path[got - 1] == 0) got--; /* path NUL */
  WL_CHECK(r == 0 && got == len && memcmp(a.sun_path, want, len) == 0, "%s name", what);
}

static void check_read(int fd, const char* want, size_t n, const char* what) {
  char buf[256];
  ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  WL_CHECK(r == (ssize_t)n && memcmp(buf, want, n) == 0, "%s: read %zd bytes", what, r);
}

int main(void) {
  wl_init();
  snprintf(dir, sizeof(dir), "/tmp/crpipe-unix-restore.%d", getpid());
  mkdir(dir, 0755);
  char path[300], lpath[300], sub[300];
  snprintf(lpath, sizeof(lpath), "%s/listener.sock", dir);
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  mkdir(sub, 0755);

  /* Listener shared by parent and child (fork), file mode and owner. */
  int lst = bound(SOCK_STREAM, lpath, strlen(lpath));
  WL_MUST(listen(lst, 7) == 0);
  WL_MUST(chmod(lpath, 0640) == 0 && chown(lpath, 1000, 1001) == 0);

  int ready[2];
  WL_MUST(pipe(ready) == 0);
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    /* The child's client: SO_PEERCRED of the parent's accepted end names the child. */
    int cl = socket(AF_UNIX, SOCK_STREAM, 0);
    connect_to(cl, lpath, strlen(lpath));
    WL_MUST(write(cl, "from-child", 10) == 10);
    WL_MUST(dup2(cl, 20) == 20);
    close(cl);
    close(ready[0]);
    WL_MUST(write(ready[1], "x", 1) == 1);
    close(ready[1]);
    wl_wait_verify();
    check_name(20, 1, lpath, strlen(lpath), "child client peer");
    check_read(20, "to-child", 8, "child client queue");
    return wl_finish();
  }
  close(ready[1]);
  char c;
  WL_MUST(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  int acc = accept(lst, NULL, NULL);
  WL_MUST(acc >= 0);
  WL_MUST(dup2(acc, 21) == 21);
  close(acc);
  WL_MUST(write(21, "to-child", 8) == 8);

  /* Two connections the listener has not accepted: one with data, one whose client closed. */
  int p0 = socket(AF_UNIX, SOCK_STREAM, 0);
  connect_to(p0, lpath, strlen(lpath));
  WL_MUST(write(p0, "pend0", 5) == 5);
  WL_MUST(dup2(p0, 22) == 22);
  close(p0);
  int p1 = socket(AF_UNIX, SOCK_STREAM, 0);
  connect_to(p1, lpath, strlen(lpath));
  WL_MUST(write(p1, "pend1!", 6) == 6);
  close(p1);

  /* Stream socketpair with data both ways and a shutdown; seqpacket pair with a
   * zero-length message. */
  int sp[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  WL_MUST(write(sp[0], "abc", 3) == 3 && write(sp[1], "defg", 4) == 4);
  WL_MUST(shutdown(sp[0], SHUT_WR) == 0);
  WL_MUST(dup2(sp[0], 23) == 23 && dup2(sp[1], 24) == 24);
  close(sp[0]);
  close(sp[1]);
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0);
  WL_MUST(write(sp[0], "one", 3) == 3 && write(sp[0], "", 0) == 0 && write(sp[0], "three", 5) == 5);
  WL_MUST(dup2(sp[0], 25) == 25 && dup2(sp[1], 26) == 26);
  close(sp[0]);
  close(sp[1]);

  /* Half-closed: the peer wrote and went away. */
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0);
  WL_MUST(write(sp[1], "bye", 3) == 3);
  close(sp[1]);
  WL_MUST(dup2(sp[0], 27) == 27);
  close(sp[0]);

  /* Datagram receiver with an abstract name holding NULs; clients named and anonymous. */
  static const char rname[] = "\0crpipe-rx\0tail";
  char rn[64];
  int rnl = snprintf(rn + 1, sizeof(rn) - 1, "crpipe-rx-%d", getpid()) + 1;
  rn[0] = 0;
  memcpy(rn + rnl, rname + 10, 5); /* "\0tail" */
  rnl += 5;
  int rx = bound(SOCK_DGRAM, rn, (size_t)rnl);
  int one = 1;
  WL_MUST(setsockopt(rx, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0);
  snprintf(path, sizeof(path), "%s/c1.sock", dir);
  int c1 = bound(SOCK_DGRAM, path, strlen(path));
  connect_to(c1, rn, (size_t)rnl);
  int c2 = socket(AF_UNIX, SOCK_DGRAM, 0);
  connect_to(c2, rn, (size_t)rnl);
  send_creds(c1, "m1", 2);
  send_creds(c2, "", 0);
  send_creds(c1, "m333", 4);
  WL_MUST(dup2(rx, 30) == 30 && dup2(c1, 31) == 31 && dup2(c2, 32) == 32);
  close(rx);
  close(c1);
  close(c2);

  /* A datagram socket connected to itself, with a message from itself. */
  snprintf(path, sizeof(path), "%s/self.sock", dir);
  int self = bound(SOCK_DGRAM, path, strlen(path));
  connect_to(self, path, strlen(path));
  WL_MUST(write(self, "me", 2) == 2);
  WL_MUST(dup2(self, 33) == 33);
  close(self);

  /* Autobound; relative to a directory; bound then unlinked with a client; renamed. */
  int au = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  WL_MUST(bind(au, (struct sockaddr*)&a, sizeof(sa_family_t)) == 0);
  WL_MUST(dup2(au, 34) == 34);
  close(au);
  WL_MUST(chdir(dir) == 0);
  int rel = bound(SOCK_DGRAM, "rel.sock", 8);
  WL_MUST(chdir("/") == 0);
  WL_MUST(dup2(rel, 35) == 35);
  close(rel);
  snprintf(path, sizeof(path), "%s/gone.sock", dir);
  int gone = bound(SOCK_DGRAM, path, strlen(path));
  int gc = socket(AF_UNIX, SOCK_DGRAM, 0);
  connect_to(gc, path, strlen(path));
  WL_MUST(unlink(path) == 0);
  WL_MUST(write(gc, "ghost", 5) == 5);
  WL_MUST(dup2(gone, 36) == 36 && dup2(gc, 37) == 37);
  close(gone);
  close(gc);
  char newp[300];
  snprintf(path, sizeof(path), "%s/old.sock", dir);
  snprintf(newp, sizeof(newp), "%s/new.sock", dir);
  int ren = bound(SOCK_STREAM, path, strlen(path));
  WL_MUST(listen(ren, 3) == 0);
  WL_MUST(rename(path, newp) == 0);
  WL_MUST(dup2(ren, 38) == 38);
  close(ren);
  snprintf(path, sizeof(path), "%s/sub/deep.sock", dir);
  int deep = bound(SOCK_SEQPACKET, path, strlen(path));
  WL_MUST(listen(deep, 2) == 0);
  WL_MUST(dup2(deep, 39) == 39);
  close(deep);

  /* Unbound, unconnected, with options. */
  int opt = socket(AF_UNIX, SOCK_DGRAM, 0);
  int v = 50000;
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) == 0);
  v = 6;
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_PRIORITY, &v, sizeof(v)) == 0);
  v = 42;
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_MARK, &v, sizeof(v)) == 0);
  v = 3;
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof(v)) == 0);
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == 0);
  struct linger lg = {1, 4};
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
  struct timeval tv = {2, 500000};
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
  struct sock_filter f[] = {{BPF_RET | BPF_K, 0, 0, 0xffff}};
  struct sock_fprog fp = {1, f};
  WL_MUST(setsockopt(opt, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof(fp)) == 0);
  WL_MUST(fcntl(opt, F_SETFL, O_NONBLOCK) == 0);
  WL_MUST(dup2(opt, 40) == 40);
  close(opt);
  /* SO_PEEK_OFF on a socket with data. */
  v = 1;
  WL_MUST(setsockopt(24, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v)) == 0);

  printf("READY {\"pid\": %d, \"child\": %d, \"dir\": \"%s\", \"listener\": \"%s\", "
         "\"accepted\": 21, \"child_client\": 20, \"pending_client\": 22}\n",
         getpid(), child, dir, lpath);
  wl_wait_verify();
  check_name(21, 0, lpath, strlen(lpath), "accepted end's own");
  check_read(21, "from-child", 10, "accepted end queue");
  check_read(24, "abc", 3, "socketpair queue");
  check_read(27, "bye", 3, "half-closed queue");
  check_read(33, "me", 2, "self-connected queue");
  check_read(36, "ghost", 5, "deleted socket queue");
  int acc2 = accept(lst, NULL, NULL);
  WL_CHECK(acc2 >= 0, "accept pending 0");
  if (acc2 >= 0) check_read(acc2, "pend0", 5, "pending 0");
  int acc3 = accept(lst, NULL, NULL);
  WL_CHECK(acc3 >= 0, "accept pending 1");
  if (acc3 >= 0) check_read(acc3, "pend1!", 6, "pending 1");
  kill(child, SIGUSR1);
  int st = 0;
  waitpid(child, &st, 0);
  WL_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child verification");
  return wl_finish();
}
