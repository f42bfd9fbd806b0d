/* A tree that keeps growing while it is frozen: every process forks a child every few
 * milliseconds and some start threads, until the tree holds `max` processes. A dump that
 * missed a task created during the freeze would leave it alive after killing the tree. */
#include "wl.h" /* first: it defines _GNU_SOURCE */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>


static void* spin(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char** argv) {
  int max = argc > 1 ? atoi(argv[1]) : 300;
  wl_init();
  atomic_int* count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  WL_MUST(count != MAP_FAILED);
  atomic_store(count, 1);
  printf("READY {\"pid\": %d, \"max\": %d}\n", getpid(), max);
  for (int round = 0;; round++) {
    if (atomic_fetch_add(count, 1) >= max) {
      break;
    }
    pid_t c = fork();
    if (c < 0) break;
    if (c == 0) {
      round = 0;
      continue;
    }
    if (round % 3 == 0) {
      pthread_t t;
      pthread_create(&t, NULL, spin, NULL);
    }
    usleep(3000);
  }
  for (;;) pause();
}
