/* The demo application: a small chat over unix sockets.
 *
 *   chat (server) ── listens on DIR/chat.sock, one stream connection per client
 *     ├── client 1..3: connect, send a line every 100 ms, read the echo
 *     └── logger: a socketpair(SOCK_DGRAM) to the server, which sends it every line
 *
 * The demo leaves one connection not yet accepted and data queued in sockets, so a
 * dump has something real to save. Output goes to DIR/chat.log. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <linux/close_range.h>
#include <unistd.h>

static void client(const char* path, int n) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
  while (connect(s, (struct sockaddr*)&a, sizeof(a)) < 0) usleep(10000);
  char line[128], echo[128];
  for (unsigned i = 0;; i++) {
    int len = snprintf(line, sizeof(line), "client %d says hello #%u\n", n, i);
    if (write(s, line, len) != len) _exit(1);
    if (read(s, echo, sizeof(echo)) <= 0) _exit(1);
    usleep(100000);
  }
}

static void logger(int sk) {
  char msg[256];
  for (;;) {
    ssize_t n = recv(sk, msg, sizeof(msg) - 1, 0);
    if (n <= 0) _exit(0);
    msg[n] = 0;
    printf("log: %s", msg);
    fflush(stdout);
  }
}

int main(int argc, char** argv) {
  /* Descriptors leaked by whoever started us would tie the tree to the outside. */
  close_range(3, ~0U, 0);
  const char* dir = argc > 1 ? argv[1] : "/tmp/crpipe-demo";
  char path[108];
  snprintf(path, sizeof(path), "%s/chat.sock", dir);
  unlink(path);
  int lsk = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof(a.sun_path) - 1);
  if (bind(lsk, (struct sockaddr*)&a, sizeof(a)) < 0 || listen(lsk, 16) < 0) {
    perror("bind/listen");
    return 1;
  }
  int pair[2];
  socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair);
  if (fork() == 0) {
    close(pair[0]);
    logger(pair[1]);
  }
  close(pair[1]);
  for (int i = 1; i <= 3; i++) {
    if (fork() == 0) client(path, i);
  }
  /* A fourth client connects but is never accepted: an in-flight connection. */
  if (fork() == 0) {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    while (connect(s, (struct sockaddr*)&a, sizeof(a)) < 0) usleep(10000);
    write(s, "waiting to be accepted\n", 23);
    for (;;) pause();
  }
  int conns[3], nconn = 0;
  while (nconn < 3) {
    int c = accept4(lsk, NULL, NULL, SOCK_CLOEXEC);
    if (c >= 0) conns[nconn++] = c;
  }
  printf("chat: server %d with 3 clients, a logger and one pending connection\n", getpid());
  fflush(stdout);
  struct pollfd p[3];
  for (int i = 0; i < 3; i++) p[i] = (struct pollfd){.fd = conns[i], .events = POLLIN};
  char buf[256];
  for (;;) {
    if (poll(p, 3, -1) < 0 && errno != EINTR) return 1;
    for (int i = 0; i < 3; i++) {
      if (!(p[i].revents & POLLIN)) continue;
      ssize_t n = read(conns[i], buf, sizeof(buf));
      if (n <= 0) return 0;
      write(conns[i], buf, n);
      send(pair[0], buf, n, MSG_DONTWAIT);
    }
  }
}
