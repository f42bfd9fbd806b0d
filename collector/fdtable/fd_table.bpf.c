// SPDX-License-Identifier: GPL-2.0
/* A process's fd table in one pass (iter/task_file, one link per process with a pid
 * filter): per fd its number, the close-on-exec bit, f_flags, f_pos, inode, mode and mount
 * id — what /proc/PID/fd lists and /proc/PID/fdinfo/N says, without making a dentry and an
 * inode per fd as /proc does. Reader: fd_table.cc. Read lock-free while the task is frozen;
 * nothing in the kernel is written. */
#include "fd_table_abi.h"
#include "task_file_bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct seq_file;
struct bpf_iter_meta { struct seq_file *seq; } PAI;
struct super_block { __u32 s_dev; } PAI;
struct inode { unsigned long i_ino; unsigned short i_mode; struct super_block *i_sb; } PAI;
struct file {
  struct inode *f_inode;
  unsigned int f_flags;
  struct path f_path;
  long long f_pos;
} PAI;
struct task_struct { struct files_struct *files; int pid; int tgid; } PAI;

SEC("iter/task_file")
int fd_table(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file) return 0;
  /* The process's table is its leader's, as /proc/PID/fd shows it: a thread that
   * unshared its fd table (the iterator walks it too) is not the process's. */
  if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid)) return 0;
  struct crp_fdt_rec r = {.fd = ctx->fd, .mnt_id = -1};
  r.flags = BPF_CORE_READ(file, f_flags);
  r.cloexec = crp_cloexec(BPF_CORE_READ(task, files, fdt, close_on_exec), r.fd);
  r.pos = BPF_CORE_READ(file, f_pos);
  struct inode *inode = BPF_CORE_READ(file, f_inode);
  r.ino = BPF_CORE_READ(inode, i_ino);
  r.mode = BPF_CORE_READ(inode, i_mode);
  r.dev = BPF_CORE_READ(inode, i_sb, s_dev);
  r.mnt_id = crp_mnt_id(BPF_CORE_READ(file, f_path.mnt));
  bpf_seq_write(seq, &r, sizeof(r));
  return 0;
}
