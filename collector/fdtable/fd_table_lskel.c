/* C side of fd_table_lskel.h: the generated light skeleton compiles as C only. */
#include "fd_table_lskel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd_table.lskel.h"

struct crpipe_fdt* crpipe_fdt_load(void) {
  struct crpipe_fdt* skel = crpipe_fdt__open_and_load();
  if (skel == NULL && errno == 0) {
    errno = EINVAL;
  }
  return skel;
}

int crpipe_fdt_prog_fd(const struct crpipe_fdt* skel) { return skel->progs.fd_table.prog_fd; }

void crpipe_fdt_destroy(struct crpipe_fdt* skel) { crpipe_fdt__destroy(skel); }
