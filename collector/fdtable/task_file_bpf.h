/* SPDX-License-Identifier: GPL-2.0 */
/* What the iter/task_file programs share (fast/fast_bpf.bpf.c, fdtable/fd_table.bpf.c):
 * the kernel types of the fd table and of a file's mount, only the fields used, CO-RE
 * relocated against the running kernel's BTF. BPF only. */
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
struct file;
struct crp_vfsmount { void *mnt_root; } PAI;
struct mount { struct crp_vfsmount mnt; int mnt_id; } PAI;
struct path { struct crp_vfsmount *mnt; } PAI;
struct fdtable { unsigned long *close_on_exec; } PAI;
struct files_struct { struct fdtable *fdt; } PAI;
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
