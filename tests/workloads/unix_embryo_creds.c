/* Connections a listener has not accepted yet, made by several tasks (issue 5 items 3 and
 * 5): after restore accept() must return them in the original order, each with the data its
 * client sent and with SO_PEERCRED naming the task that connected (pid, effective uid/gid).
 *
 * The root listens on a path and never accepts before the dump. In this order:
 *   0  child A (root's ids)      connects, sends "a0"
 *   1  child B (uid 3001/3002)   connects, sends "b1"
 *   2  child A                   connects, sends "a2"
 *   3  child C (uid 4001/4002)   connects, sends "c3", hands its client to the root, exits
 *   4  child B                   connects, sends "b4"
 *   5  child D (uid 5001/5002)   connects, sends "d5", closes its client, exits
 *   6  child E (uid 6001/6002)   connects, sends "e6", closes its client, stays alive
 *                                holding no socket at all
 * With a second argument "unlinked" the root unlinks the listener's file once everybody
 * connected (the restore then binds it again for the connects and unlinks it after).
 * A and B stay alive holding their clients. After restore the root accepts all six (the
 * listener made non-blocking: a missing connection fails instead of hanging), checks order,
 * data and SO_PEERCRED, answers "r<i>" on each live connection, and has A and B check the
 * answers on their ends. */
#include "wl.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#define N_CONN 7

static struct sockaddr_un addr;
static socklen_t addr_len;

static void become(uid_t uid, gid_t gid) {
  WL_MUST(setgid(gid) == 0);
  WL_MUST(setuid(uid) == 0);
}

/* Connects to the listener and sends "<tag><index>". */
static int connect_and_send(char tag, int index) {
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(c >= 0);
  WL_MUST(connect(c, (struct sockaddr*)&addr, addr_len) == 0);
  char msg[2] = {tag, (char)('0' + index)};
  WL_MUST(send(c, msg, 2, 0) == 2);
  return c;
}

static void send_fd(int ch, int fd) {
  char b = 'f';
  struct iovec iov = {&b, 1};
  char ctl[CMSG_SPACE(sizeof(int))];
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  WL_MUST(sendmsg(ch, &mh, 0) == 1);
}

static int recv_fd(int ch) {
  char b;
  struct iovec iov = {&b, 1};
  char ctl[CMSG_SPACE(sizeof(int))];
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  WL_MUST(recvmsg(ch, &mh, 0) == 1);
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  WL_MUST(c != NULL && c->cmsg_type == SCM_RIGHTS);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

/* What a client end expects after restore: the answer "r<index>", and SO_PEERCRED naming
 * the listener's task (the root, which listened with root's ids). */
static void check_answer(int fd, int index, pid_t root, const char* who) {
  char b[4] = {0};
  ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
  WL_CHECK(n == 2 && b[0] == 'r' && b[1] == '0' + index,
           "%s: connection %d: answer %zd bytes '%.2s', want 'r%d'", who, index, n, b, index);
  struct ucred c;
  socklen_t l = sizeof(c);
  WL_CHECK(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &l) == 0 && c.pid == root && c.uid == 0 &&
               c.gid == 0,
           "%s: connection %d: client SO_PEERCRED pid %d uid %u gid %u, want %d 0 0", who, index,
           c.pid, c.uid, c.gid, root);
}

/* A child that stays: connects whenever the root writes the index of a connection on
 * `cmd`, reports on `done`; 'w' ends the setup. After restore it checks its ends. */
static void stay(int cmd, int done, char tag, pid_t root) {
  int fds[N_CONN];
  int idx[N_CONN];
  int n = 0;
  for (;;) {
    char c;
    WL_MUST(read(cmd, &c, 1) == 1);
    if (c == 'w') break;
    idx[n] = c - '0';
    fds[n] = connect_and_send(tag, idx[n]);
    ++n;
    WL_MUST(write(done, "d", 1) == 1);
  }
  WL_MUST(write(done, "w", 1) == 1);
  wl_wait_verify();
  for (int i = 0; i < n; ++i) {
    char who[16];
    snprintf(who, sizeof(who), "child %c", tag);
    check_answer(fds[i], idx[i], root, who);
  }
  _exit(wl_failed);
}

struct child {
  pid_t pid;
  int cmd;  /* the root writes commands here */
};

static struct child start_stay(int done, char tag, uid_t uid, gid_t gid) {
  int p[2];
  WL_MUST(pipe(p) == 0);
  pid_t root = getpid();
  pid_t pid = fork();
  WL_MUST(pid >= 0);
  if (pid == 0) {
    close(p[1]);
    if (uid != 0) become(uid, gid);
    stay(p[0], done, tag, root);
  }
  close(p[0]);
  struct child ch = {pid, p[1]};
  return ch;
}

static void order(struct child* ch, int index, int done) {
  char c = (char)('0' + index);
  WL_MUST(write(ch->cmd, &c, 1) == 1);
  WL_MUST(read(done, &c, 1) == 1 && c == 'd');
}

/* A child that connects, sends, then exits: its client goes to the root over `give`
 * (give >= 0), or is closed (give < 0). */
static pid_t one_shot(char tag, int index, uid_t uid, gid_t gid, int give) {
  pid_t pid = fork();
  WL_MUST(pid >= 0);
  if (pid == 0) {
    become(uid, gid);
    int c = connect_and_send(tag, index);
    if (give >= 0) send_fd(give, c);
    close(c);
    _exit(0);
  }
  int status = 0;
  WL_MUST(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return pid;
}

/* Child E: connects, sends, closes its client and every socket it inherited, and stays
 * alive with none (the restore must still connect from its pid). */
static pid_t closer(char tag, int index, uid_t uid, gid_t gid, const int* inherited, int n) {
  int ready[2];
  WL_MUST(pipe(ready) == 0);
  pid_t pid = fork();
  WL_MUST(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    for (int i = 0; i < n; ++i) close(inherited[i]);
    become(uid, gid);
    close(connect_and_send(tag, index));
    WL_MUST(write(ready[1], "d", 1) == 1);
    close(ready[1]);
    wl_wait_verify();
    _exit(0);
  }
  close(ready[1]);
  char c;
  WL_MUST(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  return pid;
}

int main(int argc, char** argv) {
  wl_init();
  WL_MUST(argc == 2 || argc == 3);
  const char* path = argv[1];
  const int unlinked = argc == 3 && strcmp(argv[2], "unlinked") == 0;
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
  addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(l >= 0 && bind(l, (struct sockaddr*)&addr, addr_len) == 0);
  WL_MUST(chmod(path, 0777) == 0);
  WL_MUST(listen(l, 16) == 0);

  int done[2], give[2];
  WL_MUST(pipe(done) == 0);
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, give) == 0);
  struct child a = start_stay(done[1], 'a', 0, 0);
  struct child b = start_stay(done[1], 'b', 3001, 3002);

  order(&a, 0, done[0]);
  order(&b, 1, done[0]);
  order(&a, 2, done[0]);
  pid_t c = one_shot('c', 3, 4001, 4002, give[1]);
  int c_client = recv_fd(give[0]);
  order(&b, 4, done[0]);
  pid_t d = one_shot('d', 5, 5001, 5002, -1);
  const int sockets[] = {l, give[0], give[1], c_client};
  pid_t e = closer('e', 6, 6001, 6002, sockets, 4);
  char w;
  WL_MUST(write(a.cmd, "w", 1) == 1 && read(done[0], &w, 1) == 1 && w == 'w');
  WL_MUST(write(b.cmd, "w", 1) == 1 && read(done[0], &w, 1) == 1 && w == 'w');
  close(give[0]);
  close(give[1]);
  if (unlinked) WL_MUST(unlink(path) == 0);

  const pid_t want_pid[N_CONN] = {a.pid, b.pid, a.pid, c, b.pid, d, e};
  const uid_t want_uid[N_CONN] = {0, 3001, 0, 4001, 3001, 5001, 6001};
  const gid_t want_gid[N_CONN] = {0, 3002, 0, 4002, 3002, 5002, 6002};
  const char want_tag[N_CONN] = {'a', 'b', 'a', 'c', 'b', 'd', 'e'};
  printf("READY {\"pid\": %d, \"a\": %d, \"b\": %d, \"c\": %d, \"d\": %d, \"e\": %d}\n",
         getpid(), a.pid, b.pid, c, d, e);

  wl_wait_verify();
  if (unlinked) {
    struct stat st;
    WL_CHECK(lstat(path, &st) < 0 && errno == ENOENT, "the unlinked listener's file is back");
  }
  /* A connection lost in the restore must fail the check, not hang it. */
  WL_MUST(fcntl(l, F_SETFL, O_NONBLOCK) == 0);
  int acc[N_CONN];
  for (int i = 0; i < N_CONN; ++i) {
    acc[i] = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    WL_CHECK(acc[i] >= 0, "accept %d: %s", i, strerror(errno));
    if (acc[i] < 0) continue;
    char b2[4] = {0};
    ssize_t n = recv(acc[i], b2, sizeof(b2), 0);
    WL_CHECK(n == 2 && b2[0] == want_tag[i] && b2[1] == '0' + i,
             "accepted %d: data %zd bytes '%.2s', want '%c%d'", i, n, b2, want_tag[i], i);
    struct ucred cr;
    socklen_t cl = sizeof(cr);
    WL_CHECK(getsockopt(acc[i], SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 &&
                 cr.pid == want_pid[i] && cr.uid == want_uid[i] && cr.gid == want_gid[i],
             "accepted %d: SO_PEERCRED pid %d uid %u gid %u, want %d %u %u", i, cr.pid, cr.uid,
             cr.gid, want_pid[i], want_uid[i], want_gid[i]);
  }
  int extra = accept4(l, NULL, NULL, SOCK_NONBLOCK);
  WL_CHECK(extra < 0 && errno == EAGAIN, "one connection more was pending");
  /* The closed clients' connections: their data, then end of file. */
  for (int i = 5; i < N_CONN; ++i) {
    char b2[4];
    WL_CHECK(acc[i] < 0 || recv(acc[i], b2, sizeof(b2), 0) == 0,
             "connection %d: no end of file after its data", i);
  }
  for (int i = 0; i < 5; ++i) {
    char r[2] = {'r', (char)('0' + i)};
    WL_CHECK(acc[i] < 0 || send(acc[i], r, 2, MSG_NOSIGNAL) == 2, "answer %d: %s", i,
             strerror(errno));
  }
  check_answer(c_client, 3, getpid(), "root (client of the exited C)");
  kill(a.pid, SIGUSR1);
  kill(b.pid, SIGUSR1);
  kill(e, SIGUSR1);
  int status = 0;
  WL_CHECK(waitpid(e, &status, 0) == e && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "child E failed (status 0x%x)", status);
  WL_CHECK(waitpid(a.pid, &status, 0) == a.pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "child A failed (status 0x%x)", status);
  WL_CHECK(waitpid(b.pid, &status, 0) == b.pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "child B failed (status 0x%x)", status);
  unlink(path);
  return wl_finish();
}
