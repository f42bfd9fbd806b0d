/* A counter loop that appends one line per step ("1", "2", ...) to counter.txt, every 2 ms.
 * Restored, it must go on from where it was: on SIGUSR1 it checks that the file holds
 * exactly 1..counter, each once and in order (a lost counter repeats lines, a lost file
 * position or O_APPEND overwrites them), and that it counted on after READY. */
#include "wl.h"

#include <fcntl.h>
#include <time.h>

static int check_file(unsigned long counter) {
  FILE* f = fopen("counter.txt", "r");
  if (f == NULL) {
    printf("FAIL open counter.txt: %s\n", strerror(errno));
    return 0;
  }
  unsigned long want = 1, got = 0;
  while (fscanf(f, "%lu\n", &got) == 1) {
    if (got != want) {
      printf("FAIL line %lu holds %lu\n", want, got);
      fclose(f);
      return 0;
    }
    ++want;
  }
  fclose(f);
  if (want - 1 != counter) {
    printf("FAIL the file has %lu lines, the counter is %lu\n", want - 1, counter);
    return 0;
  }
  return 1;
}

int main(void) {
  wl_init();
  int fd = open("counter.txt", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  WL_MUST(fd >= 0);
  unsigned long counter = 0, ready = 0;
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR1);
  for (;;) {
    ++counter;
    dprintf(fd, "%lu\n", counter);
    if (counter == 20) {
      ready = counter;
      printf("READY {\"pid\": %d, \"counter\": %lu}\n", getpid(), counter);
    }
    struct timespec ts = {0, 2 * 1000 * 1000};
    int r = sigtimedwait(&s, NULL, &ts);
    if (r == SIGUSR1 && ready != 0) {
      break;
    }
  }
  /* Ten steps more: the restored loop must go on writing where the file ends. */
  for (int i = 0; i < 10; ++i) {
    ++counter;
    dprintf(fd, "%lu\n", counter);
  }
  int ok = check_file(counter);
  if (ok) {
    printf("PASS counter %lu\n", counter);
  }
  return ok ? 0 : 1;
}
