/* SO_PEERCRED (issue 5 item 3): what each end reports is the pid and effective uid/gid of
 * whoever made the pair, listened or connected — and stays so after restore.
 * - A child with uid 1001/gid 1002 makes a stream and a datagram socketpair, passes all
 *   four ends to the parent (SCM_RIGHTS) and exits: every end reports that exited child's
 *   pid, 1001 and 1002.
 *   Before it exits it also sends a datagram to a socket of the parent's with SO_PASSCRED:
 *   the datagram's SCM_CREDENTIALS name that exited child, which must come back as they
 *   were (a pid that no task has any more).
 * - A second child, uid 2001/gid 2002, listens on a path; the parent (root) connects; the
 *   child accepts: the parent's end reports the child (2001/2002), the child's accepted end
 *   the parent (0/0). The child stays alive and checks its end after restore. */
#include "wl.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

static void check_cred(int fd, pid_t pid, uid_t uid, gid_t gid, const char* what) {
  struct ucred c;
  socklen_t l = sizeof(c);
  WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &l) == 0, "%s: getsockopt: %s", what,
           strerror(errno));
  WL_CHECK(c.pid == pid && c.uid == uid && c.gid == gid,
           "%s: SO_PEERCRED pid %d uid %u gid %u, want %d %u %u", what, c.pid, c.uid, c.gid, pid,
           uid, gid);
}

static int recv_fds(int ch, int* fds, int n) {
  char b;
  struct iovec iov = {&b, 1};
  char ctl[CMSG_SPACE(sizeof(int) * 4)];
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  if (recvmsg(ch, &mh, 0) != 1) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  if (c == NULL || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int) * n)) return -1;
  memcpy(fds, CMSG_DATA(c), sizeof(int) * n);
  return 0;
}

static void send_fds(int ch, const int* fds, int n) {
  char b = 'f';
  struct iovec iov = {&b, 1};
  char ctl[CMSG_SPACE(sizeof(int) * 4)];
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * n);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  WL_MUST(sendmsg(ch, &mh, 0) == 1);
}

static void become(uid_t uid, gid_t gid) {
  WL_MUST(setgid(gid) == 0);
  WL_MUST(setuid(uid) == 0);
}

int main(int argc, char** argv) {
  wl_init();
  WL_MUST(argc == 2);
  const char* path = argv[1];
  int ch[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, ch) == 0);
  int cr[2];  /* cr[1] receives the exiting child's credentials */
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM, 0, cr) == 0);
  int on = 1;
  WL_MUST(setsockopt(cr[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);

  /* The pair maker that exits. */
  pid_t maker = fork();
  WL_MUST(maker >= 0);
  if (maker == 0) {
    become(1001, 1002);
    int st[2], dg[2];
    WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, st) == 0);
    WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0);
    WL_MUST(send(st[0], "pair", 4, 0) == 4);
    WL_MUST(send(cr[0], "cred", 4, 0) == 4);
    int fds[4] = {st[0], st[1], dg[0], dg[1]};
    send_fds(ch[1], fds, 4);
    _exit(0);
  }
  int pf[4];
  WL_MUST(recv_fds(ch[0], pf, 4) == 0);
  WL_MUST(waitpid(maker, NULL, 0) == maker);

  /* The listener in a child with other ids. */
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
  socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
  int ready[2];
  WL_MUST(pipe(ready) == 0);
  pid_t server = fork();
  WL_MUST(server >= 0);
  if (server == 0) {
    close(ready[0]);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    WL_MUST(l >= 0 && bind(l, (struct sockaddr*)&a, al) == 0);
    become(2001, 2002);
    WL_MUST(listen(l, 4) == 0);
    WL_MUST(write(ready[1], "l", 1) == 1);
    int acc = accept(l, NULL, NULL);
    WL_MUST(acc >= 0);
    WL_MUST(write(ready[1], "a", 1) == 1);
    wl_wait_verify();
    check_cred(acc, getppid(), 0, 0, "the accepted end");
    char b[8] = {0};
    WL_CHECK(recv(acc, b, sizeof(b), MSG_DONTWAIT) == 5 && memcmp(b, "hello", 5) == 0,
             "the accepted end lost its data");
    _exit(wl_failed);
  }
  close(ready[1]);
  char b;
  WL_MUST(read(ready[0], &b, 1) == 1);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(c >= 0 && connect(c, (struct sockaddr*)&a, al) == 0);
  WL_MUST(read(ready[0], &b, 1) == 1);
  WL_MUST(send(c, "hello", 5, 0) == 5);
  check_cred(pf[0], maker, 1001, 1002, "stream pair end 0 before");
  check_cred(c, server, 2001, 2002, "the client end before");
  WL_MUST(!wl_failed);
  printf("READY {\"pid\": %d, \"maker\": %d, \"server\": %d}\n", getpid(), maker, server);

  wl_wait_verify();
  check_cred(pf[0], maker, 1001, 1002, "stream pair end 0");
  check_cred(pf[1], maker, 1001, 1002, "stream pair end 1");
  check_cred(pf[2], maker, 1001, 1002, "dgram pair end 0");
  check_cred(pf[3], maker, 1001, 1002, "dgram pair end 1");
  check_cred(c, server, 2001, 2002, "the client end");
  char buf[8] = {0};
  WL_CHECK(recv(pf[1], buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "pair", 4) == 0,
           "the stream pair lost its data");
  {
    char d[8] = {0};
    struct iovec iov = {d, sizeof(d)};
    char ctl[CMSG_SPACE(sizeof(struct ucred))];
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof(ctl);
    WL_CHECK(recvmsg(cr[1], &mh, MSG_DONTWAIT) == 4 && memcmp(d, "cred", 4) == 0,
             "the credentialed datagram was lost");
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    WL_CHECK(c != NULL && c->cmsg_type == SCM_CREDENTIALS, "no SCM_CREDENTIALS on the datagram");
    if (c != NULL && c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred u;
      memcpy(&u, CMSG_DATA(c), sizeof(u));
      WL_CHECK(u.pid == maker && u.uid == 1001 && u.gid == 1002,
               "SCM_CREDENTIALS pid %d uid %u gid %u, want %d 1001 1002", u.pid, u.uid, u.gid,
               maker);
    }
  }
  kill(server, SIGUSR1);
  int status = 0;
  WL_CHECK(waitpid(server, &status, 0) == server && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the listening child failed (status 0x%x)", status);
  unlink(path);
  return wl_finish();
}
