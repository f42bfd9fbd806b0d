/* Three generations joined by pipes with data in flight: root -> child -> grandchild each
 * write a message into the pipe to the next generation that nobody reads before the dump;
 * the grandchild answers back up a second chain. After SIGUSR1 to the root, it writes
 * "go" down; each generation checks what was waiting for it and passes on; the root
 * checks the grandchild's answer (sent before the dump) and the final report. */
#include "wl.h"

#include <sys/wait.h>

static int down1[2], down2[2], up[2];

static int readExact(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    got += (size_t)r;
  }
  return 1;
}

int main(void) {
  wl_init();
  WL_MUST(pipe(down1) == 0 && pipe(down2) == 0 && pipe(up) == 0);
  WL_MUST(write(down1[1], "to child", 8) == 8);
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    WL_MUST(write(down2[1], "to grandchild", 13) == 13);
    pid_t gc = fork();
    WL_MUST(gc >= 0);
    if (gc == 0) {
      WL_MUST(write(up[1], "answer", 6) == 6);
      char b[32];
      int ok = readExact(down2[0], b, 13) && memcmp(b, "to grandchild", 13) == 0 &&
               readExact(down2[0], b, 2) && memcmp(b, "go", 2) == 0;
      WL_MUST(write(up[1], ok ? "Y" : "N", 1) == 1);
      _exit(0);
    }
    char b[32];
    int ok = readExact(down1[0], b, 8) && memcmp(b, "to child", 8) == 0 &&
             readExact(down1[0], b, 2) && memcmp(b, "go", 2) == 0;
    WL_MUST(write(down2[1], "go", 2) == 2);
    int st = 0;
    waitpid(gc, &st, 0);
    _exit(ok ? 0 : 1);
  }
  usleep(100 * 1000);
  printf("READY {\"pid\": %d, \"child\": %d}\n", getpid(), child);
  wl_wait_verify();
  WL_MUST(write(down1[1], "go", 2) == 2);
  char b[16];
  WL_CHECK(readExact(up[0], b, 6) && memcmp(b, "answer", 6) == 0, "the answer in flight");
  WL_CHECK(readExact(up[0], b, 1) && b[0] == 'Y', "the grandchild saw wrong data");
  int st = 0;
  WL_CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "child status %d", st);
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
