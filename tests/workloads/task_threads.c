/* 4 threads taking turns under a mutex and a condition variable, each counting in a
 * thread-local variable. After restore the turns go on: on SIGUSR1 the main thread stops
 * them and checks that every thread's TLS count, its own record of it and the shared total
 * agree, and that all kept running after READY. */
#include "wl.h"

#include <pthread.h>

#define N 4
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn, stop;
static unsigned long total, seen[N], atReady[N];
static __thread unsigned long mine;
static __thread int myIndex = -1;

static void* worker(void* arg) {
  myIndex = (int)(long)arg;
  pthread_mutex_lock(&mu);
  for (;;) {
    while (turn != myIndex && !stop) pthread_cond_wait(&cv, &mu);
    if (stop) break;
    ++mine;
    ++total;
    seen[myIndex] = mine;
    turn = (turn + 1) % N;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    usleep(500);
    pthread_mutex_lock(&mu);
  }
  int ok = seen[myIndex] == mine && myIndex == (int)(long)arg;
  pthread_mutex_unlock(&mu);
  return (void*)(long)ok;
}

int main(void) {
  wl_init();
  pthread_t t[N];
  for (long i = 0; i < N; ++i) WL_MUST(pthread_create(&t[i], NULL, worker, (void*)i) == 0);
  for (;;) {
    pthread_mutex_lock(&mu);
    unsigned long tot = total;
    pthread_mutex_unlock(&mu);
    if (tot >= 40) break;
    usleep(1000);
  }
  pthread_mutex_lock(&mu);
  for (int i = 0; i < N; ++i) atReady[i] = seen[i];
  pthread_mutex_unlock(&mu);
  printf("READY {\"pid\": %d}\n", getpid());
  wl_wait_verify();
  usleep(50 * 1000); /* turns after the restore */
  pthread_mutex_lock(&mu);
  stop = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  unsigned long sumSeen = 0;
  for (int i = 0; i < N; ++i) {
    void* ok = NULL;
    WL_CHECK(pthread_join(t[i], &ok) == 0, "join %d", i);
    WL_CHECK(ok == (void*)1, "thread %d: TLS count and record differ", i);
    WL_CHECK(seen[i] > atReady[i] + 2, "thread %d did not run on (%lu, %lu at READY)", i,
             seen[i], atReady[i]);
    sumSeen += seen[i];
  }
  WL_CHECK(sumSeen == total, "total %lu, threads %lu", total, sumSeen);
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
