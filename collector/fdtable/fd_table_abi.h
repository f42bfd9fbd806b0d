/* SPDX-License-Identifier: GPL-2.0 */
/* One record per fd of the process the fd-table iterator walks (fd_table.bpf.c → reader
 * fd_table.cc), and after the record of a unix socket's fd, that socket's options as a
 * struct crp_fast_usk (fast/fast_bpf_abi.h; no SKB records follow, but with CRP_FDT_QCOUNT
 * its nskbs and qbytes count the queue). Shared by the BPF program and user space; fixed
 * layout. */
#pragma once

#include <linux/types.h>

enum crp_fdt_bits {
  CRP_FDT_OWNER_PID = 1, /* f_owner has a pid set: F_GETOWN_EX must say who */
  CRP_FDT_SOCKET = 2,    /* a socket: sk_family valid */
  CRP_FDT_USK = 4,       /* a crp_fast_usk record follows (a unix socket) */
  CRP_FDT_QCOUNT = 8,    /* that record's nskbs and qbytes count the receive queue's skbs
                          * and unread bytes (no SKB records follow) */
  CRP_FDT_SOLE = 16,     /* this fd is the file's only reference: no other fd, task or
                          * queued message holds it */
  CRP_FDT_QPLAIN = 32,   /* with QCOUNT: every queued skb has the same sender credentials
                          * (q_pid, q_uid, q_gid) and security label, and none carries
                          * files */
};

struct crp_fdt_rec {
  __u32 fd;
  __u32 flags;    /* f_flags */
  __u64 pos;      /* f_pos */
  __u64 ino;      /* the inode number */
  __s32 mnt_id;   /* the mount's id, -1 if the file has none */
  __u32 mode;     /* i_mode */
  __u32 dev;      /* the inode's super block's s_dev (MAJOR << 20 | MINOR) */
  __u32 cloexec;  /* 1 when the fd table says close-on-exec */
  __u32 bits;     /* CRP_FDT_* */
  __u32 own_pid_type, own_signum; /* f_owner's pid type and signal, 0 without an owner */
  __u32 sk_family;
  __u32 sk_state;  /* a socket's state (TCP_ESTABLISHED, TCP_LISTEN, ...) */
  __u32 q_pid;     /* QPLAIN: the sender's pid as the reader's namespace sees it (0: none) */
  __u32 q_uid, q_gid;
};
#ifdef __cplusplus
static_assert(sizeof(struct crp_fdt_rec) == 72, "crp_fdt_rec is 72 bytes on both sides");
#else
_Static_assert(sizeof(struct crp_fdt_rec) == 72, "crp_fdt_rec is 72 bytes on both sides");
#endif
