/* Stream and seqpacket unix sockets that were never connected, bound and unbound: the
 * dump must record them (state CLOSE, no queue) rather than fail reading a queue. */
#include "wl.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static unsigned long ino(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

int main(void) {
  wl_init();
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  int q = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  int b = socket(AF_UNIX, SOCK_STREAM, 0);
  WL_MUST(s >= 0 && q >= 0 && b >= 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof(a.sun_path), "bound-unconnected.sock");
  WL_MUST(bind(b, (struct sockaddr*)&a, sizeof(a)) == 0);
  printf("READY {\"pid\": %d, \"stream\": %lu, \"seqpacket\": %lu, \"bound\": %lu}\n", getpid(),
         ino(s), ino(q), ino(b));
  wl_wait_verify();
  int type = 0;
  socklen_t l = sizeof(type);
  WL_CHECK(getsockopt(q, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_SEQPACKET,
           "seqpacket socket type");
  WL_CHECK(listen(b, 1) == 0, "the bound socket can still listen");
  unlink("bound-unconnected.sock");
  return wl_finish();
}
