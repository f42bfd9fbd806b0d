/* Private and shared file mappings with modified pages. The shared mapping's writes are
 * in the file (and must be seen through the restored mapping, which must still be shared:
 * a write after restore reaches the file); the private mapping's copied-on-write page must
 * come back while the file keeps its old bytes. */
#include "wl.h"

#include <fcntl.h>
#include <sys/mman.h>

#define PAGE 4096

int main(void) {
  wl_init();
  int fd = open("filemap.dat", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  WL_MUST(fd >= 0);
  static char buf[4 * PAGE];
  memset(buf, 'o', sizeof buf);
  WL_MUST(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf);
  char* sh = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  char* pr = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 2 * PAGE);
  WL_MUST(sh != MAP_FAILED && pr != MAP_FAILED);
  close(fd);
  memcpy(sh + 100, "shared write", 12);
  memcpy(pr + PAGE + 7, "private write", 13);
  WL_MUST(mprotect(pr, PAGE, PROT_READ) == 0);
  printf("READY {\"pid\": %d}\n", getpid());
  wl_wait_verify();
  WL_CHECK(memcmp(sh + 100, "shared write", 12) == 0, "shared mapping lost its write");
  WL_CHECK(memcmp(pr + PAGE + 7, "private write", 13) == 0, "private page lost");
  WL_CHECK(pr[0] == 'o', "private read-only page");
  memcpy(sh + 2000, "after", 5);
  int f2 = open("filemap.dat", O_RDONLY | O_CLOEXEC);
  char got[16] = {0};
  WL_CHECK(pread(f2, got, 5, 2000) == 5 && memcmp(got, "after", 5) == 0,
           "a write to the restored shared mapping did not reach the file");
  WL_CHECK(pread(f2, got, 13, 3 * PAGE + 7) == 13 && memcmp(got, "ooooooooooooo", 13) == 0,
           "the private write reached the file");
  close(f2);
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
