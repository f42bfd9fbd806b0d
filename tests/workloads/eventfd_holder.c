/* Holds an fd of a kind crpipe cannot dump yet (eventfd): the dump must be refused with
 * the pid, fd number, kind and link, and the workload must go on untouched. */
#include "wl.h" /* first: it defines _GNU_SOURCE */
#include <sys/eventfd.h>


int main(void) {
  wl_init();
  int e = eventfd(42, EFD_NONBLOCK);
  WL_MUST(e >= 0);
  printf("READY {\"pid\": %d, \"fd\": %d}\n", getpid(), e);
  wl_wait_verify();
  uint64_t v = 0;
  WL_CHECK(read(e, &v, sizeof(v)) == sizeof(v) && v == 42, "eventfd counter changed (%lu)",
           (unsigned long)v);
  return wl_finish();
}
