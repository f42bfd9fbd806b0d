/* Unix sockets whose peers are outside the dumped tree: a dgram client connected to a
 * named server and one end of a stream socketpair, the other ends held by a process that
 * is not a descendant (double fork; the middle process exits). The dump must refuse
 * without --ext-unix-sk / --external and record the sockets as external with them. After
 * the dump both connections still work. */
#include "unix_ux.h"

#include <sys/wait.h>

int main(void) {
  wl_init();
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
