/* Memory a dump must record exactly: a known pattern at a known address, an untouched
 * 64 MiB anonymous mapping (no pages stored), a MAP_SHARED|MAP_ANONYMOUS region shared with
 * a child (stored once), a grown brk, a copied-on-write page of a private file mapping,
 * and madvise states. After SIGUSR1 the parent checks that everything is still there. */
#include "wl.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096

static void fill(unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i) p[i] = (unsigned char)(seed * 131 + i * 7);
}
static int same(const unsigned char* p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != (unsigned char)(seed * 131 + i * 7)) return 0;
  return 1;
}

int main(void) {
  wl_init();
  /* A static stdout buffer: the first printf must not grow the heap after brk is read. */
  static char outbuf[4096];
  setvbuf(stdout, outbuf, _IOLBF, sizeof(outbuf));
  /* 3 pages of a known pattern, aligned so that the pages are exactly these. */
  unsigned char* pat = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(pat != MAP_FAILED);
  fill(pat, 3 * PAGE, 1);
  /* Never touched: the dump must store none of it. */
  unsigned char* big = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(big != MAP_FAILED);
  /* Shared anonymous memory, 5 of its 256 pages written, shared with a child. */
  unsigned char* shm = mmap(NULL, 256 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  WL_MUST(shm != MAP_FAILED);
  for (int i = 0; i < 5; ++i) fill(shm + i * 10 * PAGE, PAGE, 100 + i);
  /* brk grown by 1 MiB, its last page written. */
  void* old = sbrk(0);
  WL_MUST(sbrk(1 << 20) != (void*)-1);
  unsigned char* brk = sbrk(0);
  fill(brk - PAGE, PAGE, 7);
  /* A private file mapping: page 1 written (copied on write), pages 0 and 2 only read. */
  char path[] = "task_memory_file";
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  WL_MUST(fd >= 0);
  static unsigned char filebuf[3 * PAGE];
  memset(filebuf, 'f', sizeof(filebuf));
  WL_MUST(write(fd, filebuf, sizeof(filebuf)) == (ssize_t)sizeof(filebuf));
  unsigned char* fmap = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  WL_MUST(fmap != MAP_FAILED);
  close(fd);
  volatile unsigned char sink = fmap[0] + fmap[2 * PAGE];
  (void)sink;
  fill(fmap + PAGE, PAGE, 9);
  /* madvise states, each on its own mapping. */
  unsigned char* dontfork = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  unsigned char* wipe = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(dontfork != MAP_FAILED && wipe != MAP_FAILED);
  WL_MUST(madvise(dontfork, PAGE, MADV_DONTFORK) == 0);
  WL_MUST(madvise(wipe, PAGE, MADV_WIPEONFORK) == 0);

  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    wl_wait_verify();
    _exit(0);
  }
  printf("READY {\"pid\": %d, \"child\": %d, \"pattern\": %lu, \"big\": %lu, \"shm\": %lu, "
         "\"old_brk\": %lu, \"brk\": %lu, \"fmap\": %lu, \"dontfork\": %lu, \"wipe\": %lu}\n",
         getpid(), child, (unsigned long)pat, (unsigned long)big, (unsigned long)shm,
         (unsigned long)old, (unsigned long)brk, (unsigned long)fmap,
         (unsigned long)dontfork, (unsigned long)wipe);
  wl_wait_verify();
  kill(child, SIGUSR1);
  int st = 0;
  waitpid(child, &st, 0);
  WL_CHECK(same(pat, 3 * PAGE, 1), "pattern changed");
  for (int i = 0; i < 5; ++i) WL_CHECK(same(shm + i * 10 * PAGE, PAGE, 100 + i), "shared page %d", i);
  WL_CHECK(sbrk(0) == brk, "brk moved");
  WL_CHECK(same(brk - PAGE, PAGE, 7), "brk page");
  WL_CHECK(same(fmap + PAGE, PAGE, 9), "copied-on-write page");
  WL_CHECK(fmap[0] == 'f' && fmap[2 * PAGE] == 'f', "file pages");
  return wl_finish();
}
