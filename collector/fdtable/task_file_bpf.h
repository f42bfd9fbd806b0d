/* SPDX-License-Identifier: GPL-2.0 */
/* What the iter/task_file programs share (fast/fast_bpf.bpf.c, fdtable/fd_table.bpf.c):
 * the kernel types of the fd table and of a file's mount, only the fields used, CO-RE
 * relocated against the running kernel's BTF. BPF only; include after ../kinds/unix_skb_bpf.h. */
#pragma once

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#ifndef PAI
#define PAI __attribute__((preserve_access_index))
#endif

struct bpf_iter_meta;
struct task_struct;
struct super_block { __u32 s_dev; } PAI;
struct inode___crp { unsigned long i_ino; unsigned short i_mode; struct super_block *i_sb; } PAI;
enum pid_type { PIDTYPE_PID };
struct fown_struct { void *pid; enum pid_type pid_type; int signum; } PAI;
struct crp_vfsmount { void *mnt_root; } PAI;
struct mount { struct crp_vfsmount mnt; int mnt_id; } PAI;
struct path { struct crp_vfsmount *mnt; } PAI;
struct fdtable { unsigned long *close_on_exec; } PAI;
struct files_struct { struct fdtable *fdt; } PAI;
struct file {
  struct inode___crp *f_inode;
  unsigned int f_flags;
  void *private_data;
  struct path f_path;
  long long f_pos;
  struct fown_struct *f_owner; /* 6.12+: a pointer, NULL until F_SETOWN/F_SETSIG */
} PAI;
struct file___old { struct fown_struct f_owner; } PAI; /* before 6.12: embedded */
struct bpf_iter__task_file {
  struct bpf_iter_meta *meta;
  struct task_struct *task;
  __u32 fd;
  struct file *file;
} PAI;

/* The mount id of a file's vfsmount (struct mount embeds it), -1 without one. */
static __always_inline int crp_mnt_id(struct crp_vfsmount *vm) {
  if (!vm) return -1;
  struct mount *m = (void *)((char *)vm - bpf_core_field_offset(struct mount, mnt));
  return BPF_CORE_READ(m, mnt_id);
}

/* Whether fd is close-on-exec in the fd table whose bitmap is `coe`. */
static __always_inline int crp_cloexec(unsigned long *coe, __u32 fd) {
  unsigned long word = 0;
  if (!coe || bpf_probe_read_kernel(&word, sizeof(word), coe + fd / 64)) return 0;
  return (word >> (fd % 64)) & 1;
}

/* A file's owner as F_GETOWN_EX/F_GETSIG would tell it, without a pid: its pid type and
 * signal (both 0 when no owner was ever set). Returns 1 when a pid is set (then only
 * F_GETOWN_EX can say which, as the reader's namespace sees it). */
static __always_inline int crp_read_owner(struct file *file, __u32 *pid_type, __u32 *signum) {
  struct fown_struct *own = 0;
  if (bpf_core_field_size(struct file, f_owner) == sizeof(void *))
    own = BPF_CORE_READ(file, f_owner);
  else
    own = (void *)((char *)file + bpf_core_field_offset(struct file___old, f_owner));
  if (!own) return 0;
  *pid_type = BPF_CORE_READ(own, pid_type);
  *signum = BPF_CORE_READ(own, signum);
  return BPF_CORE_READ(own, pid) != 0;
}

/* The socket behind a socket file, as a typed pointer the verifier lets a program read
 * with plain loads (bpf_sock_from_file), or NULL for other files. */
static __always_inline struct sock *crp_file_sock(struct file *file, unsigned int mode) {
  if ((mode & 00170000) != 0140000 /* S_ISSOCK */) return 0;
  struct socket *sock = bpf_sock_from_file(file);
  return sock ? sock->sk : 0;
}
