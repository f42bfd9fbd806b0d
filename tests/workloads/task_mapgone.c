/* A tree whose last process maps a file it holds no fd of: root and two children, each
 * with 4 MiB of anonymous memory, the last child with a shared mapping of "mapped.dat".
 * The test removes the file between dump and restore, so the restore fails in the memory
 * phase after the root and the first child were already made: everything must be killed.
 * Prints READY {"pid": ROOT, "pids": [ROOT, C1, C2]}. */
#include "wl.h"

#include <fcntl.h>
#include <sys/mman.h>

static void busy(unsigned long seed) {
  size_t n = 4u << 20;
  unsigned long* p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(p != MAP_FAILED);
  for (size_t i = 0; i < n / sizeof(*p); i++) p[i] = seed * i + 1;
}

int main(void) {
  wl_init();
  int fd = open("mapped.dat", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  WL_MUST(fd >= 0 && ftruncate(fd, 8192) == 0);
  int ready[2];
  WL_MUST(pipe2(ready, O_CLOEXEC) == 0);
  pid_t kids[2];
  for (int i = 0; i < 2; i++) {
    kids[i] = fork();
    WL_MUST(kids[i] >= 0);
    if (kids[i] == 0) {
      close(ready[0]);
      busy(i + 2);
      if (i == 1) {
        char* m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        WL_MUST(m != MAP_FAILED);
        memcpy(m, "mapped", 6);
      }
      close(fd);
      WL_MUST(write(ready[1], "x", 1) == 1);
      close(ready[1]);
      wl_wait_verify();
      return 0;
    }
  }
  close(fd);
  close(ready[1]);
  char c;
  for (int i = 0; i < 2; i++) WL_MUST(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  busy(1);
  printf("READY {\"pid\": %d, \"pids\": [%d, %d, %d]}\n", getpid(), getpid(), kids[0], kids[1]);
  wl_wait_verify();
  printf("PASS\n");
  return 0;
}
