/* malloc/brk growth and fork() after restore: the heap keeps its data and grows on from
 * the restored brk; a child forked after restore sees the parent's memory and exits 0. */
#include "wl.h"

#include <stdint.h>
#include <sys/wait.h>

int main(void) {
  wl_init();
  char* blocks[64];
  for (int i = 0; i < 64; ++i) {
    blocks[i] = malloc(1000 + i * 10);
    WL_MUST(blocks[i] != NULL);
    memset(blocks[i], 'a' + i % 26, 1000 + i * 10);
  }
  void* brk0 = sbrk(0);
  printf("READY {\"pid\": %d}\n", getpid());
  wl_wait_verify();
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 1000 + i * 10; ++j)
      if (blocks[i][j] != 'a' + i % 26) {
        WL_CHECK(0, "block %d byte %d", i, j);
        i = 64;
        break;
      }
  WL_CHECK(sbrk(0) == brk0, "brk %p, was %p", sbrk(0), brk0);
  /* Grow the heap by brk itself, and malloc more. */
  char* more = sbrk(1 << 20);
  WL_CHECK(more == brk0, "sbrk grew from %p, not %p", (void*)more, brk0);
  if (more != (void*)-1) memset(more, 'z', 1 << 20);
  char* m2 = malloc(200000);
  WL_CHECK(m2 != NULL, "malloc after restore");
  if (m2) memset(m2, 1, 200000);
  pid_t c = fork();
  if (c == 0) {
    int ok = blocks[5][10] == 'a' + 5 && more[12345] == 'z';
    _exit(ok ? 0 : 3);
  }
  WL_CHECK(c > 0, "fork: %s", strerror(errno));
  int st = 0;
  WL_CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
