/* What closing and unlinking leave behind (issue 5 items 2 and 3):
 * - one end of a datagram socketpair whose other end was closed, with the datagrams that
 *   end had sent still queued (it stays "connected" to the dead end);
 * - a datagram receiver bound, a client connected to it, the socket file unlinked, and a
 *   FIFO made at the same path and opened: after restore the path is the FIFO again, the
 *   receiver keeps its name and the client still reaches it;
 * - two generations of datagram receivers bound at one path in a subdirectory, each with
 *   a client connected to it, the path unlinked after each and the subdirectory removed:
 *   after restore each client still reaches its own receiver and the subdirectory is
 *   still gone. */
#include "wl.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

int main(void) {
  wl_init();
  char dir[] = "/tmp/crpipe-leftovers-XXXXXX";
  WL_MUST(mkdtemp(dir) != NULL);
  char path[128];
  snprintf(path, sizeof(path), "%s/sock-then-fifo", dir);

  int pair[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) == 0);
  WL_MUST(send(pair[1], "first", 5, 0) == 5 && send(pair[1], "", 0, 0) == 0 &&
          send(pair[1], "third", 5, 0) == 5);
  close(pair[1]);

  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, path);
  socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
  int recv_sk = socket(AF_UNIX, SOCK_DGRAM, 0);
  int client = socket(AF_UNIX, SOCK_DGRAM, 0);
  WL_MUST(recv_sk >= 0 && client >= 0 && bind(recv_sk, (struct sockaddr*)&a, al) == 0);
  WL_MUST(connect(client, (struct sockaddr*)&a, al) == 0);
  WL_MUST(send(client, "queued", 6, 0) == 6);
  WL_MUST(unlink(path) == 0 && mkfifo(path, 0640) == 0);
  int fifo = open(path, O_RDWR);
  WL_MUST(fifo >= 0);
  WL_MUST(write(fifo, "in-fifo", 7) == 7);
  char sub[128], gen_path[160];
  snprintf(sub, sizeof(sub), "%s/gone-dir", dir);
  snprintf(gen_path, sizeof(gen_path), "%s/gen.sock", sub);
  WL_MUST(mkdir(sub, 0755) == 0);
  struct sockaddr_un g = {.sun_family = AF_UNIX};
  strcpy(g.sun_path, gen_path);
  socklen_t gl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(gen_path) + 1);
  int gen_recv[2], gen_client[2];
  for (int i = 0; i < 2; ++i) {
    gen_recv[i] = socket(AF_UNIX, SOCK_DGRAM, 0);
    gen_client[i] = socket(AF_UNIX, SOCK_DGRAM, 0);
    WL_MUST(gen_recv[i] >= 0 && gen_client[i] >= 0);
    WL_MUST(bind(gen_recv[i], (struct sockaddr*)&g, gl) == 0);
    WL_MUST(connect(gen_client[i], (struct sockaddr*)&g, gl) == 0);
    WL_MUST(unlink(gen_path) == 0);
  }
  WL_MUST(rmdir(sub) == 0);
  printf("READY {\"pid\": %d, \"dir\": \"%s\"}\n", getpid(), dir);

  wl_wait_verify();
  char buf[16];
  const char* want[] = {"first", "", "third"};
  for (int i = 0; i < 3; ++i) {
    memset(buf, 0, sizeof(buf));
    ssize_t n = recv(pair[0], buf, sizeof(buf), MSG_DONTWAIT);
    WL_CHECK(n == (ssize_t)strlen(want[i]) && memcmp(buf, want[i], n > 0 ? n : 0) == 0,
             "orphaned pair, datagram %d: %zd '%s', want '%s'", i, n, buf, want[i]);
  }
  WL_CHECK(send(pair[0], "x", 1, MSG_DONTWAIT) < 0, "a send to the closed end worked");

  struct stat st;
  WL_CHECK(lstat(path, &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 0777) == 0640,
           "%s is not the FIFO any more", path);
  memset(buf, 0, sizeof(buf));
  WL_CHECK(read(fifo, buf, 7) == 7 && memcmp(buf, "in-fifo", 7) == 0, "the FIFO lost its data");
  WL_CHECK(write(fifo, "y", 1) == 1 && read(fifo, buf, 1) == 1 && buf[0] == 'y',
           "the FIFO does not pass data");
  memset(buf, 0, sizeof(buf));
  WL_CHECK(recv(recv_sk, buf, sizeof(buf), MSG_DONTWAIT) == 6 && memcmp(buf, "queued", 6) == 0,
           "the receiver lost its queued datagram: '%s'", buf);
  WL_CHECK(send(client, "again", 5, 0) == 5, "the client cannot send: %s", strerror(errno));
  memset(buf, 0, sizeof(buf));
  WL_CHECK(recv(recv_sk, buf, sizeof(buf), MSG_DONTWAIT) == 5 && memcmp(buf, "again", 5) == 0,
           "the receiver did not get the new datagram");
  struct sockaddr_un sn;
  socklen_t sl = sizeof(sn);
  WL_CHECK(getsockname(recv_sk, (struct sockaddr*)&sn, &sl) == 0 && strcmp(sn.sun_path, path) == 0,
           "the receiver lost its name");
  for (int i = 0; i < 2; ++i) {
    char msg[8], got[8] = {0};
    snprintf(msg, sizeof(msg), "gen%d", i);
    WL_CHECK(send(gen_client[i], msg, 4, 0) == 4, "generation %d: send: %s", i, strerror(errno));
    WL_CHECK(recv(gen_recv[i], got, sizeof(got), MSG_DONTWAIT) == 4 && memcmp(got, msg, 4) == 0,
             "generation %d: its receiver got '%s'", i, got);
  }
  WL_CHECK(access(sub, F_OK) < 0 && errno == ENOENT, "%s is back", sub);
  unlink(path);
  rmdir(dir);
  return wl_finish();
}
