// SPDX-License-Identifier: GPL-2.0
/* A process's fd table in one pass (iter/task_file, one link per process with a pid
 * filter): per fd its number, the close-on-exec bit, f_flags, f_pos, inode, mode, mount
 * id and owner — what /proc/PID/fd lists, /proc/PID/fdinfo/N and F_GETOWN_EX/F_GETSIG say,
 * without making a dentry and an inode per fd as /proc does — and for a unix socket the
 * options getsockopt would report (kinds/unix_opts_bpf.h). Reader: fd_table.cc. Read
 * lock-free while the task is frozen; nothing in the kernel is written. */
#include "../kinds/unix_skb_bpf.h"
#include "../kinds/unix_opts_bpf.h"
#include "fd_table_abi.h"
#include "task_file_bpf.h"

char LICENSE[] SEC("license") = "GPL";

/* The collector's pid namespace (level and namespace of its pid), read at the first fd:
 * every pid the program reports is numbered in it, and it does not change. */
__u32 reader_level = 0;
__u64 reader_ns = 0;
__u32 reader_known = 0;

#define CRP_FDT_DIRECT_SKBS 16

/* A file's reference count: f_ref (file_ref_t, 6.13+: references - 1) or f_count before. */
struct crp_counter { long counter; };
struct crp_file_ref { struct crp_counter refcnt; };
struct file___ref { struct crp_file_ref f_ref; } PAI;
struct file___count { struct crp_counter f_count; } PAI;

/* A receive queue counted: skbs, unread bytes (unix_skb_len), and whether they all come
 * from one sender (same credentials and security label) without files. */
struct qcount {
  __u64 pid;
  __u32 n, bytes, ok, mixed, uid, gid, secid;
};

SEC("iter/task_file")
int fd_table(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file) return 0;
  /* Typed pointers from the context (and what they point to) are read with plain loads,
   * which the verifier checks against the kernel's BTF: a helper call per field cost the
   * iterator nine tenths of its time. */
  if (task->pid != task->tgid) return 0;
  struct crp_fdt_rec r = {.fd = ctx->fd, .mnt_id = -1};
  r.flags = file->f_flags;
  r.cloexec = crp_cloexec(task->files->fdt->close_on_exec, r.fd);
  r.pos = file->f_pos;
  struct inode___crp *inode = file->f_inode;
  r.ino = inode->i_ino;
  r.mode = inode->i_mode;
  r.dev = inode->i_sb->s_dev;
  r.mnt_id = crp_mnt_id(file->f_path.mnt);
  struct fown_struct *own = 0;
  if (bpf_core_field_size(struct file, f_owner) == sizeof(void *))
    own = file->f_owner;
  else
    own = &((struct file___old *)file)->f_owner;
  if (own) {
    r.own_pid_type = own->pid_type;
    r.own_signum = own->signum;
    if (own->pid) r.bits |= CRP_FDT_OWNER_PID;
  }
  /* The iterator holds one reference of its own while the program runs (task_file takes
   * it with the file): a file held by this one fd alone has two. */
  long refs = -1;
  if (bpf_core_field_exists(((struct file___ref *)0)->f_ref))
    refs = ((struct file___ref *)file)->f_ref.refcnt.counter + 1;
  else if (bpf_core_field_exists(((struct file___count *)0)->f_count))
    refs = ((struct file___count *)file)->f_count.counter;
  if (refs == 2) r.bits |= CRP_FDT_SOLE;
  struct sock *sk = crp_file_sock(file, r.mode);
  if (sk) {
    r.bits |= CRP_FDT_SOCKET;
    r.sk_family = sk->__sk_common.skc_family;
    r.sk_state = sk->__sk_common.skc_state;
    if (r.sk_family == 1 /* AF_UNIX */) r.bits |= CRP_FDT_USK;
  }
  if (!(r.bits & CRP_FDT_USK)) {
    bpf_seq_write(seq, &r, sizeof(r));
    return 0;
  }
  /* One write for both: an fd whose output does not fit the read's buffer is shown again
   * at the next read, and a record without its follower must never reach user space. */
  struct {
    struct crp_fdt_rec fd;
    struct crp_fast_usk usk;
  } both;
  __builtin_memset(&both, 0, sizeof(both));
  both.fd = r;
  both.usk.type = CRP_FAST_USK;
  both.usk.size = sizeof(both.usk);
  both.usk.ino = (__u32)r.ino;
  /* hz 0: a light skeleton would carry the build machine's CONFIG_HZ, not the running
   * kernel's, so sockets with a timeout or linger (in jiffies) have those read with
   * getsockopt. */
  if (!reader_known && reader_pid_ns(&reader_level, &reader_ns)) reader_known = 1;
  crp_read_usk_opts(sk, &both.usk, 0, reader_level, reader_ns);
  if (r.sk_state != TCP_LISTEN) {
    /* A listener's queue holds connections, which user space learns from sock_diag. The
     * skbs are walked with plain loads, lock-free while the owner is frozen (a queue only
     * shrinks by its owner's recvmsg; a peer outside the tree appends whole skbs), up to
     * CRP_FDT_DIRECT_SKBS: a longer queue is left uncounted, and peeked the usual way. */
    struct qcount q = {};
    __u64 head = (__u64)&sk->sk_receive_queue;
    struct sk_buff *skb = sk->sk_receive_queue.next;
    for (int i = 0; i < CRP_FDT_DIRECT_SKBS; i++) {
      if (!skb) break;
      if ((__u64)skb == head) { q.ok = 1; break; }
      struct unix_skb_parms *cb = (void *)skb->cb;
      __u32 len = skb->len, consumed = cb->consumed;
      if (consumed > len) break;
      __u64 pid = (__u64)cb->pid;
      __u32 uid = cb->uid.val, gid = cb->gid.val;
      /* a peek with SO_PASSCRED on also cuts at a change of security label */
      __u32 secid = bpf_core_field_exists(cb->secid) ? cb->secid : 0;
      if (cb->fp) q.mixed = 1;
      if (q.n == 0) {
        q.pid = pid;
        q.uid = uid;
        q.gid = gid;
        q.secid = secid;
      } else if (pid != q.pid || uid != q.uid || gid != q.gid || secid != q.secid) {
        q.mixed = 1;
      }
      q.bytes += len - consumed;
      q.n++;
      skb = skb->next;
    }
    /* a queue of exactly CRP_FDT_DIRECT_SKBS ends where the loop does */
    if (!q.ok && skb && (__u64)skb == head) q.ok = 1;
    if (q.ok) {
      both.fd.bits |= CRP_FDT_QCOUNT;
      both.usk.nskbs = q.n;
      both.usk.qbytes = q.bytes;
      if (q.n && !q.mixed) {
        both.fd.bits |= CRP_FDT_QPLAIN;
        both.fd.q_pid = pid_nr_in((struct pid *)q.pid, reader_level, reader_ns);
        both.fd.q_uid = q.uid;
        both.fd.q_gid = q.gid;
      }
    }
  }
  bpf_seq_write(seq, &both, sizeof(both));
  return 0;
}
