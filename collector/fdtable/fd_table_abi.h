/* SPDX-License-Identifier: GPL-2.0 */
/* One record per fd of the process the fd-table iterator walks (fd_table.bpf.c → reader
 * fd_table.cc). Shared by the BPF program and user space; fixed layout. */
#pragma once

#include <linux/types.h>

struct crp_fdt_rec {
  __u32 fd;
  __u32 flags;    /* f_flags */
  __u64 pos;      /* f_pos */
  __u64 ino;      /* the inode number */
  __s32 mnt_id;   /* the mount's id, -1 if the file has none */
  __u32 mode;     /* i_mode */
  __u32 dev;      /* the inode's super block's s_dev (MAJOR << 20 | MINOR) */
  __u32 cloexec;  /* 1 when the fd table says close-on-exec */
};
#ifdef __cplusplus
static_assert(sizeof(struct crp_fdt_rec) == 40, "crp_fdt_rec is 40 bytes on both sides");
#else
_Static_assert(sizeof(struct crp_fdt_rec) == 40, "crp_fdt_rec is 40 bytes on both sides");
#endif
