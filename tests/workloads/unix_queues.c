/* Unix socket pairs of every type with queued data: several messages, zero-length records,
 * SCM_RIGHTS of a regular file, a pipe and a socket no task holds any more, SCM_CREDENTIALS,
 * peek offsets set by the user, non-default options and a BPF filter, and one pair whose
 * ends live in two processes. After the dump it checks that every queued byte, record and
 * file is still there in order and that the peek offsets did not move. */
#include "unix_ux.h"

#include <linux/filter.h>
#include <sys/time.h>
#include <sys/wait.h>

static const char kStream1[] = "hello ";
static const char kStream2[] = "world";
static const char kStreamF[] = "F";  /* carries a pipe's read end */
static const char kStream3[] = "tail-bytes";

/* argv[1] "linked": the passed regular file stays linked until the end (a restore cannot
 * bring back the contents of an unlinked file yet); the default unlinks it at once. */
int main(int argc, char** argv) {
  const int linked = argc > 1 && strcmp(argv[1], "linked") == 0;
  wl_init();
  char tmpl[] = "/tmp/unix_queues.XXXXXX";
  int file = mkstemp(tmpl);
  WL_MUST(file >= 0);
  WL_MUST(write(file, "regular", 7) == 7);
  if (!linked) unlink(tmpl);
  int pipefd[2];
  WL_MUST(pipe(pipefd) == 0);
  WL_MUST(write(pipefd[1], "in-pipe", 7) == 7);

  /* Stream: bytes from several sends, a pipe in the middle, a peek offset of 3. */
  int st[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, st) == 0);
  ux_send(st[0], kStream1, strlen(kStream1), NULL, 0, 0);
  ux_send(st[0], kStream2, strlen(kStream2), NULL, 0, 0);
  ux_send(st[0], kStreamF, 1, &pipefd[0], 1, 0);
  ux_send(st[0], kStream3, strlen(kStream3), NULL, 0, 0);
  ux_set_int(st[1], SO_PEEK_OFF, 3);

  /* Dgram: zero-length records around data, a regular file in one record. */
  int dg[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0);
  ux_send(dg[0], "", 0, NULL, 0, 0);
  ux_send(dg[0], "d1", 2, NULL, 0, 0);
  ux_send(dg[0], "", 0, NULL, 0, 0);
  ux_send(dg[0], "d-three", 7, &file, 1, 0);
  ux_send(dg[0], "", 0, NULL, 0, 0);
  ux_set_int(dg[1], SO_PEEK_OFF, 0);

  /* A socket that only exists in a queue: x is sent over dg and closed here; y keeps the
   * other end, and x has bytes queued from y. */
  int xy[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, xy) == 0);
  ux_send(xy[1], "to-x", 4, NULL, 0, 0);
  ux_send(dg[0], "sk", 2, &xy[0], 1, 0);
  close(xy[0]);

  /* Seqpacket: credentials on, records incl. an empty one, then the sender shuts down. */
  int sp[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0);
  ux_set_int(sp[1], SO_PASSCRED, 1);
  ux_send(sp[0], "s1", 2, NULL, 0, 1);
  ux_send(sp[0], "", 0, NULL, 0, 1);
  ux_send(sp[0], "s-three", 7, NULL, 0, 0);
  WL_MUST(shutdown(sp[0], SHUT_WR) == 0);

  /* Options that differ from the defaults, on the dgram receiver. */
  ux_set_int(dg[1], SO_SNDBUF, 65536);
  ux_set_int(dg[1], SO_RCVBUF, 100000);
  ux_set_int(dg[1], SO_PRIORITY, 5);
  ux_set_int(dg[1], SO_MARK, 7);
  ux_set_int(dg[1], SO_RCVLOWAT, 2);
  ux_set_int(dg[1], SO_KEEPALIVE, 1);
  ux_set_int(dg[1], SO_PASSSEC, 1);
  struct timeval tv = {3, 500000};
  WL_MUST(setsockopt(dg[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
  struct timeval tv2 = {1, 250000};
  WL_MUST(setsockopt(dg[1], SOL_SOCKET, SO_SNDTIMEO, &tv2, sizeof(tv2)) == 0);
  struct linger lg = {1, 9};
  WL_MUST(setsockopt(dg[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
  struct sock_filter code[] = {{BPF_RET | BPF_K, 0, 0, 0xffffffff}};
  struct sock_fprog prog = {1, code};
  WL_MUST(setsockopt(dg[1], SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) == 0);
  int flags = fcntl(dg[1], F_GETFL);
  WL_MUST(fcntl(dg[1], F_SETFL, flags | O_NONBLOCK) == 0);

  /* Across processes: the child holds the sending end and has sent 3 records. */
  int cp[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, cp) == 0);
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    close(cp[1]);
    ux_send(cp[0], "c1", 2, NULL, 0, 0);
    ux_send(cp[0], "c22", 3, NULL, 0, 0);
    ux_send(cp[0], "", 0, NULL, 0, 0);
    for (;;) pause();
  }
  close(cp[0]);
  /* Make sure the child's records are queued before READY. */
  for (int i = 0; i < 1000; i++) {
    struct ux_msg m;
    if (ux_recv(cp[1], &m, MSG_PEEK) == 0) break;
    usleep(1000);
  }

  printf("READY {\"pid\": %d, \"child\": %d, \"sockets\": ["
         "{\"name\": \"stream_rx\", \"fd\": %d, \"ino\": %lu, \"peer\": %lu, \"type\": \"stream\","
         " \"queued_bytes\": %zu, \"peek_off\": 3},"
         "{\"name\": \"dgram_rx\", \"fd\": %d, \"ino\": %lu, \"peer\": %lu, \"type\": \"dgram\","
         " \"records\": [0, 2, 0, 7, 0, 2], \"peek_off\": 0, \"sndbuf\": 131072, "
         "\"rcvbuf\": 200000, \"priority\": 5, \"mark\": 7, \"rcvlowat\": 2, \"linger\": 9, "
         "\"rcvtimeo\": [3, 500000], \"sndtimeo\": [1, 250000], \"filter_len\": 1},"
         "{\"name\": \"seqpacket_rx\", \"fd\": %d, \"ino\": %lu, \"peer\": %lu,"
         " \"type\": \"seqpacket\", \"records\": [2, 0, 7], \"passcred\": true},"
         "{\"name\": \"cross_rx\", \"fd\": %d, \"ino\": %lu, \"type\": \"seqpacket\","
         " \"records\": [2, 3, 0]},"
         "{\"name\": \"scm_only_peer\", \"fd\": %d, \"ino\": %lu, \"queued_bytes\": 0}"
         "]}\n",
         getpid(), child, st[1], ux_ino(st[1]), ux_ino(st[0]),
         strlen(kStream1) + strlen(kStream2) + 1 + strlen(kStream3), dg[1], ux_ino(dg[1]),
         ux_ino(dg[0]), sp[1], ux_ino(sp[1]), ux_ino(sp[0]), cp[1], ux_ino(cp[1]), xy[1],
         ux_ino(xy[1]));

  wl_wait_verify();

  WL_CHECK(ux_peek_off(st[1]) == 3, "stream peek offset %d, want 3", ux_peek_off(st[1]));
  WL_CHECK(ux_peek_off(dg[1]) == 0, "dgram peek offset %d, want 0", ux_peek_off(dg[1]));
  WL_CHECK(ux_peek_off(sp[1]) == -1, "seqpacket peek offset %d, want -1", ux_peek_off(sp[1]));
  int v = 0;
  socklen_t l = sizeof(v);
  getsockopt(st[1], SOL_SOCKET, SO_PASSCRED, &v, &l);
  WL_CHECK(v == 0, "SO_PASSCRED of the stream receiver changed to %d", v);

  /* Peeking at offset 3 still works from where the user left it. */
  ux_set_int(st[1], SO_PEEK_OFF, -1);
  static const char all[] = "hello worldFtail-bytes";
  ux_expect_stream(st[1], "stream", all, strlen(all), 1);
  ux_expect_empty(st[1], "stream");

  ux_set_int(dg[1], SO_PEEK_OFF, -1);
  ux_expect_record(dg[1], "dgram #0 (empty)", "", 0, 0);
  ux_expect_record(dg[1], "dgram #1", "d1", 2, 0);
  ux_expect_record(dg[1], "dgram #2 (empty)", "", 0, 0);
  struct ux_msg m;
  WL_CHECK(ux_recv(dg[1], &m, 0) == 0 && m.len == 7 && m.nfds == 1, "dgram #3 with a file");
  if (m.nfds == 1) {
    char b[8] = {0};
    WL_CHECK(pread(m.fds[0], b, 7, 0) == 7 && memcmp(b, "regular", 7) == 0,
             "file passed in dgram #3 reads back");
    close(m.fds[0]);
  }
  ux_expect_record(dg[1], "dgram #4 (empty)", "", 0, 0);
  WL_CHECK(ux_recv(dg[1], &m, 0) == 0 && m.len == 2 && m.nfds == 1, "dgram #5 with a socket");
  if (m.nfds == 1) {
    struct ux_msg x;
    WL_CHECK(ux_recv(m.fds[0], &x, 0) == 0 && x.len == 4 && memcmp(x.data, "to-x", 4) == 0,
             "the passed socket still holds its queue");
    close(m.fds[0]);
  }
  ux_expect_empty(dg[1], "dgram");

  WL_CHECK(ux_recv(sp[1], &m, 0) == 0 && m.len == 2 && m.has_creds && m.creds.pid == getpid(),
           "seqpacket #0 with credentials");
  ux_expect_record(sp[1], "seqpacket #1 (empty)", "", 0, 0);
  ux_expect_record(sp[1], "seqpacket #2", "s-three", 7, 0);
  WL_CHECK(recv(sp[1], m.data, 1, MSG_DONTWAIT) == 0, "seqpacket at EOF after its records");

  ux_expect_record(cp[1], "cross #0", "c1", 2, 0);
  ux_expect_record(cp[1], "cross #1", "c22", 3, 0);
  ux_expect_record(cp[1], "cross #2 (empty)", "", 0, 0);
  ux_expect_empty(cp[1], "cross");

  char pb[8] = {0};
  WL_CHECK(read(pipefd[0], pb, 7) == 7 && memcmp(pb, "in-pipe", 7) == 0, "pipe data");

  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  if (linked) unlink(tmpl);
  return wl_finish();
}
