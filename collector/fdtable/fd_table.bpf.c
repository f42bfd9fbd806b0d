// SPDX-License-Identifier: GPL-2.0
/* A process's fd table in one pass (iter/task_file, one link per process with a pid
 * filter): per fd its number, the close-on-exec bit, f_flags, f_pos, inode, mode and mount
 * id — what /proc/PID/fd lists and /proc/PID/fdinfo/N says, without making a dentry and an
 * inode per fd as /proc does. Reader: fd_table.cc. Read lock-free while the task is frozen;
 * nothing in the kernel is written. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "fd_table_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define PAI __attribute__((preserve_access_index))
#define CRP_O_CLOEXEC 02000000

struct seq_file;
struct bpf_iter_meta { struct seq_file *seq; } PAI;
struct crp_vfsmount { void *mnt_root; } PAI;
struct mount { struct crp_vfsmount mnt; int mnt_id; } PAI;
struct path { struct crp_vfsmount *mnt; } PAI;
struct inode { unsigned long i_ino; unsigned short i_mode; } PAI;
struct file {
  struct inode *f_inode;
  unsigned int f_flags;
  struct path f_path;
  long long f_pos;
} PAI;
struct fdtable { unsigned long *close_on_exec; } PAI;
struct files_struct { struct fdtable *fdt; } PAI;
struct task_struct { struct files_struct *files; } PAI;
struct bpf_iter__task_file {
  struct bpf_iter_meta *meta;
  struct task_struct *task;
  __u32 fd;
  struct file *file;
} PAI;

SEC("iter/task_file")
int fd_table(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file) return 0;
  struct crp_fdt_rec r = {.fd = ctx->fd, .mnt_id = -1};
  r.flags = BPF_CORE_READ(file, f_flags);
  unsigned long *coe = BPF_CORE_READ(task, files, fdt, close_on_exec);
  unsigned long word = 0;
  if (coe && !bpf_probe_read_kernel(&word, sizeof(word), coe + r.fd / 64) &&
      ((word >> (r.fd % 64)) & 1))
    r.flags |= CRP_O_CLOEXEC;
  r.pos = BPF_CORE_READ(file, f_pos);
  struct inode *inode = BPF_CORE_READ(file, f_inode);
  r.ino = BPF_CORE_READ(inode, i_ino);
  r.mode = BPF_CORE_READ(inode, i_mode);
  struct crp_vfsmount *vm = BPF_CORE_READ(file, f_path.mnt);
  if (vm) {
    struct mount *m = (void *)((char *)vm - bpf_core_field_offset(struct mount, mnt));
    r.mnt_id = BPF_CORE_READ(m, mnt_id);
  }
  bpf_seq_write(seq, &r, sizeof(r));
  return 0;
}
