/* Unix sockets whose peers are outside the dumped tree: a dgram client connected to a
 * named server and one end of a stream socketpair, the other ends held by a process that
 * is not a descendant (double fork; the middle process exits). The dump must refuse
 * without --ext-unix-sk / --external and record the sockets as external with them. After
 * the dump both connections still work.
 *
 * With arguments `unix_extern DGRAM_PATH STREAM_PATH [dead]` the servers are the test's
 * (outside the dumped tree, before and after a restore): the dgram client connects to
 * DGRAM_PATH, a stream socket to the listener at STREAM_PATH. On SIGUSR1 it sends "ping"
 * on the dgram client and echoes one byte through the stream connection; with "dead" the
 * stream connection must be closed instead (EOF, EPIPE) and the dgram client still
 * connected. */
#include "unix_ux.h"

#include <sys/wait.h>

static int outside_servers(int argc, char** argv) {
  const int dead = argc > 3 && strcmp(argv[3], "dead") == 0;
  struct sockaddr_un d = {.sun_family = AF_UNIX}, st = {.sun_family = AF_UNIX};
  snprintf(d.sun_path, sizeof(d.sun_path), "%s", argv[1]);
  snprintf(st.sun_path, sizeof(st.sun_path), "%s", argv[2]);
  int cli = socket(AF_UNIX, SOCK_DGRAM, 0);
  WL_MUST(connect(cli, (struct sockaddr*)&d, sizeof(d)) == 0);
  int sc = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(connect(sc, (struct sockaddr*)&st, sizeof(st)) == 0);
  printf("READY {\"pid\": %d, \"dgram_client\": {\"ino\": %lu, \"peer_name\": \"%s\"},"
         " \"stream_client\": {\"ino\": %lu, \"fd\": %d}}\n",
         getpid(), ux_ino(cli), d.sun_path, ux_ino(sc), sc);
  wl_wait_verify();
  WL_CHECK(send(cli, "ping", 4, 0) == 4, "dgram client still connected");
  struct sockaddr_un peer;
  socklen_t pl = sizeof(peer);
  WL_CHECK(getpeername(cli, (struct sockaddr*)&peer, &pl) == 0 &&
               strcmp(peer.sun_path, d.sun_path) == 0, "dgram client's peer name");
  if (dead) {
    char b;
    WL_CHECK(read(sc, &b, 1) == 0, "dead stream connection reads EOF");
    WL_CHECK(send(sc, "e", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "dead stream connection: EPIPE");
  } else {
    WL_CHECK(write(sc, "e", 1) == 1, "stream connection writable");
    char b = 0;
    WL_CHECK(read(sc, &b, 1) == 1 && b == 'E', "echo from the outside server");
  }
  return wl_finish();
}

int main(int argc, char** argv) {
  wl_init();
  if (argc > 2) return outside_servers(argc, argv);
  char path[] = "/tmp/unix_extern.XXXXXX";
  WL_MUST(mkdtemp(path) != NULL);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "%s/srv.sock", path);
  int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
  WL_MUST(bind(srv, (struct sockaddr*)&a, sizeof(a)) == 0);
  int pair[2];
  WL_MUST(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
  int cli = socket(AF_UNIX, SOCK_DGRAM, 0);
  WL_MUST(connect(cli, (struct sockaddr*)&a, sizeof(a)) == 0);

  pid_t mid = fork();
  WL_MUST(mid >= 0);
  if (mid == 0) {
    if (fork() == 0) {
      /* The outside process: keeps srv and pair[1], echoes one byte back on pair[1]. */
      close(cli);
      close(pair[0]);
      char b;
      if (read(pair[1], &b, 1) == 1) (void)!write(pair[1], &b, 1);
      char d[16];
      (void)!recv(srv, d, sizeof(d), 0);
      _exit(0);
    }
    _exit(0);
  }
  waitpid(mid, NULL, 0);
  close(srv);
  close(pair[1]);
  printf("READY {\"pid\": %d, \"dgram_client\": {\"ino\": %lu, \"peer_name\": \"%s\"},"
         " \"stream_end\": {\"ino\": %lu}}\n",
         getpid(), ux_ino(cli), a.sun_path, ux_ino(pair[0]));
  wl_wait_verify();
  WL_CHECK(send(cli, "ping", 4, 0) == 4, "dgram client still connected");
  WL_CHECK(write(pair[0], "e", 1) == 1, "stream end writable");
  char b = 0;
  WL_CHECK(read(pair[0], &b, 1) == 1 && b == 'e', "echo from the outside end");
  return wl_finish();
}
