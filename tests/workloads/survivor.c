/* A tree whose dump is killed halfway: 384 MiB of random memory (so the dump takes a
 * while), a child, a pipe and a unix socketpair with data queued. After any stage of the
 * dump was killed, everything must be exactly as before: memory, queues, the child. */
#include "wl.h"

#include <linux/close_range.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

static unsigned long fill(unsigned long* p, size_t words) {
  unsigned long x = 88172645463325252ull, sum = 0;
  for (size_t i = 0; i < words; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = x;
    sum += x;
  }
  return sum;
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 384;
  wl_init();
  size_t words = (mib << 20) / 8;
  unsigned long* mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(mem != MAP_FAILED);
  unsigned long sum = fill(mem, words);
  int p[2], sv[2];
  WL_MUST(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  WL_MUST(write(p[1], "pipe-data", 9) == 9 && write(sv[0], "sock-data", 9) == 9);
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    wl_wait_verify();
    _exit(0);
  }
  printf("READY {\"pid\": %d, \"child\": %d}\n", getpid(), child);
  wl_wait_verify();
  unsigned long now = 0;
  for (size_t i = 0; i < words; i++) now += mem[i];
  WL_CHECK(now == sum, "memory changed");
  char buf[16];
  WL_CHECK(read(p[0], buf, sizeof(buf)) == 9 && memcmp(buf, "pipe-data", 9) == 0, "pipe data");
  WL_CHECK(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT) == 9 && memcmp(buf, "sock-data", 9) == 0,
           "socket data");
  WL_CHECK(kill(child, SIGUSR1) == 0, "child gone");
  int st = 0;
  WL_CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child");
  return wl_finish();
}
