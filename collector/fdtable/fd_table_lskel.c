/* C side of fd_table_lskel.h: the generated light skeleton compiles as C only. */
#include "fd_table_lskel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd_table.lskel.h"

struct crpipe_fdt* crpipe_fdt_load(void) {
  /* The loader program reports EAGAIN now and then right after other BPF objects of this
   * process were freed (seen in the unit tests, which load several in a row): tried again
   * a few times, a millisecond apart. */
  for (int attempt = 0;; ++attempt) {
    errno = 0;
    struct crpipe_fdt* skel = crpipe_fdt__open_and_load();
    if (skel != NULL) {
      return skel;
    }
    if (errno == 0) {
      errno = EINVAL;
    }
    if (errno != EAGAIN || attempt == 20) {
      return NULL;
    }
    usleep(1000);
  }
}

int crpipe_fdt_prog_fd(const struct crpipe_fdt* skel) { return skel->progs.fd_table.prog_fd; }

void crpipe_fdt_destroy(struct crpipe_fdt* skel) { crpipe_fdt__destroy(skel); }
