/* Runs of pages across the collector's pagemap reads: it reads a mapping's page table in
 * growing pieces (256, then 2,048, then 16,384 pages, then 65,536 at a time) and names each
 * piece's pages to the serializer before the next is read, so a run of present pages that
 * spans a piece boundary is split there into two pagemap entries (each before its pages),
 * and a hole right at a boundary must stay a hole. Page i of the mapping is written (with a
 * pattern of i) when want(i) says so; the rest are never touched, some only read (the zero
 * page: not stored either).
 * A child maps /dev/zero privately and writes to it: a private mapping of a device sends the
 * whole process the late way (its pages read after smaps), and its pages must be there too.
 * READY reports both mappings; restored, every written page must hold its pattern and every
 * untouched page must read as zeroes. */
#include "wl.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define NPAGES 84400 /* 330 MiB of address space, ~60 MiB written */

/* Piece boundaries (pages from the mapping's start): 256, 2304, 18688, 84224. */
static int want(size_t i) {
  if (i >= 250 && i < 262) return 1;          /* a run across 256 */
  if (i == 2303 || i == 2305) return 1;       /* a hole exactly at 2304 */
  if (i >= 4000 && i < 18688) return 1;       /* a run that ends right at 18688 */
  if (i >= 18689 && i < 18700) return 1;      /* one right after that hole */
  if (i >= 84200 && i < 84300) return 1;      /* a run across 84224 */
  if (i % 97 == 0) return 1;                  /* scattered single pages */
  return 0;
}

static void fill(char* p, size_t i) {
  for (size_t k = 0; k < PAGE; k += 8) {
    uint64_t v = (uint64_t)i * 0x9e3779b97f4a7c15ull + k;
    memcpy(p + k, &v, 8);
  }
}

static int check_area(const char* base, size_t n, int (*w)(size_t)) {
  char page[PAGE];
  static const char zero[PAGE];
  int bad = 0;
  for (size_t i = 0; i < n; ++i) {
    if (w(i)) {
      fill(page, i);
      if (memcmp(base + i * PAGE, page, PAGE) != 0) {
        if (bad++ < 5) printf("check failed: page %zu lost its pattern\n", i);
      }
    } else if (memcmp(base + i * PAGE, zero, PAGE) != 0) {
      if (bad++ < 5) printf("check failed: untouched page %zu is not zero\n", i);
    }
  }
  return bad;
}

static int want_dev(size_t i) { return i % 3 != 1; }

int main(void) {
  wl_init();
  char* m = mmap(NULL, (size_t)NPAGES * PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  WL_MUST(m != MAP_FAILED);
  volatile char sink = 0;
  for (size_t i = 0; i < NPAGES; ++i) {
    if (want(i)) {
      fill(m + i * PAGE, i);
    } else if (i % 5 == 0) {
      sink += m[i * PAGE];  /* read only: the shared zero page */
    }
  }
  (void)sink;
  int ready[2];
  WL_MUST(pipe(ready) == 0);
  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    int z = open("/dev/zero", O_RDWR);
    WL_MUST(z >= 0);
    char* d = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, z, 0);
    WL_MUST(d != MAP_FAILED);
    close(z);
    for (size_t i = 0; i < 64; ++i) {
      if (want_dev(i)) fill(d + i * PAGE, i);
    }
    char c = 1;
    WL_MUST(write(ready[1], &c, 1) == 1);
    wl_wait_verify();
    int bad = check_area(d, 64, want_dev);
    printf(bad ? "FAIL child\n" : "PASS child\n");
    return bad ? 1 : 0;
  }
  char c;
  WL_MUST(read(ready[0], &c, 1) == 1);
  printf("READY {\"pid\": %d, \"child\": %d, \"area\": %lu, \"pages\": %d}\n", getpid(), child,
         (unsigned long)(uintptr_t)m, NPAGES);
  wl_wait_verify();
  if (check_area(m, NPAGES, want)) wl_failed = 1;
  kill(child, SIGUSR1);
  int st = 0;
  WL_MUST(waitpid(child, &st, 0) == child);
  WL_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's /dev/zero pages were lost");
  return wl_finish();
}
