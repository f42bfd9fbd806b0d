// SPDX-License-Identifier: GPL-2.0
/* The collector's fast path: two BPF iterators that read in one pass what the syscall path
 * reads with a dozen syscalls per fd. Records: fast_bpf_abi.h; reader: fast_snapshot.cc.
 *
 *  - iter/task_file (one link per process, pid filter): per fd its number, CLOEXEC, f_flags,
 *    f_pos, inode, device, mount id, owner and a per-dump id of the open file description
 *    (a hash map from the struct file pointer, so no kernel pointer reaches user space and
 *    kcmp is not needed); for sockets the family and type.
 *    For a unix socket, right after its fd: the SOL_SOCKET state getsockopt would report,
 *    the peer's credentials, and the receive queue skb by skb with its data, credentials
 *    and the sender's address. (Not an iter/unix pass: that iterator drops the rest of a
 *    hash bucket whenever one read()'s 32 KiB buffer fills, and walks every socket of the
 *    namespace; task_file resumes exactly and walks only the tree's fds.)
 *
 * Like the embryo reader (unix_embryo_bpf.bpf.c, whose locking notes apply), everything is
 * read lock-free with bpf_probe_read_kernel while the owners are frozen: queues shrink only
 * by recvmsg of the frozen owner; an append by a peer outside the tree links a fully built
 * skb at the tail. A torn read yields a "not read" verdict (the syscall path then peeks),
 * never an oops; nothing in the kernel is written. */
#include "../kinds/unix_skb_bpf.h"
#include "../kinds/unix_opts_bpf.h"
#include "../fdtable/task_file_bpf.h"
#include "fast_bpf_abi.h"

char LICENSE[] SEC("license") = "GPL";

extern unsigned int CONFIG_HZ __kconfig __weak;

#define LONG_MAX_ ((long)(~0UL >> 1))

/* Both hash maps are preallocated (sized by user space from the tree's fd tables before
 * loading): without preallocation an iterator that inserts thousands of elements in one
 * read() drains the allocator's per-cpu cache, whose refill waits for irq work, and inserts
 * start failing. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u64);  /* struct file * */
  __type(value, __u32);
} file_ids SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u32); /* inode of a unix socket already reported */
  __type(value, __u32);
} reported SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct crp_emb_config);
} fast_cfg SEC(".maps");

struct crp_fast_buf { __u8 b[CRP_FAST_CHUNK]; };
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2); /* 0: scratch for copies, 1: never written (zeros for padding) */
  __type(key, __u32);
  __type(value, struct crp_fast_buf);
} fast_scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct crp_fast_skb);
} fast_skb_rec SEC(".maps"); /* an skb record is too big for the stack with the rest */

__u32 next_file_id = 0;

/* ---- unix sockets -------------------------------------------------------------------- */

/* Checks the queue and counts what it holds; 0 = CRP_QW_NONE when it can be emitted whole. */
struct qscan {
  __u64 head, skb;
  struct unix_sock *u;
  struct crp_calib *cal;
  __u32 n, bytes, why, oob;
};

static long scan_skb(__u32 i, void *ctx) {
  struct qscan *q = ctx;
  struct sk_buff *skb = (void *)rd64(q->skb ? (void *)&((struct sk_buff *)q->skb)->next
                                            : (void *)&((struct sk_buff_head *)q->head)->next);
  if (!skb) { q->why = CRP_QW_READ; return 1; }
  if ((__u64)skb == q->head) return 1;
  q->skb = (__u64)skb;
  if (++q->n > CRP_FAST_MAX_SKBS) { q->why = CRP_QW_BIG; return 1; }
  struct unix_skb_parms *cb = (void *)&skb->cb;
  if (BPF_CORE_READ(cb, fp)) { q->why = CRP_QW_RIGHTS; return 1; }
  __u32 len = BPF_CORE_READ(skb, len), consumed = BPF_CORE_READ(cb, consumed);
  __u32 data_len = BPF_CORE_READ(skb, data_len);
  if (consumed > len || data_len > len) { q->why = CRP_QW_READ; return 1; }
  q->bytes += len - consumed;
  if (q->bytes + q->n * sizeof(struct crp_fast_skb) > CRP_FAST_SOCK_BYTES - 512) {
    q->why = CRP_QW_BIG;
    return 1;
  }
  if (data_len) {
    struct skb_shared_info *si =
        (void *)((__u64)BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end));
    if (BPF_CORE_READ(si, frag_list) || !q->cal || !q->cal->ok) { q->why = CRP_QW_LAYOUT; return 1; }
  }
  return 0;
}

struct qemit {
  struct seq_file *seq;
  struct crp_fast_buf *buf, *zeros;
  struct crp_fast_skb *rec;
  struct crp_calib *cal;
  __u64 head, skb, prev_pid;
  __u32 prev_uid, prev_gid, prev_secid, have_prev, ino, sk_type, failed, left;
  /* the skb being copied */
  __u64 data, shinfo;
  __u32 linear, consumed, remaining, pos, seg, seg_start, nr_frags, copying;
};

static __always_inline void put_skb_header(struct qemit *e, struct sk_buff *skb) {
  struct crp_fast_skb *rp = e->rec;
  __builtin_memset(rp, 0, sizeof(*rp));
  rp->type = CRP_FAST_SKB;
  rp->size = sizeof(*rp);
  rp->ino = e->ino;
  struct unix_skb_parms *cb = (void *)&skb->cb;
  __u32 len = BPF_CORE_READ(skb, len);
  e->consumed = BPF_CORE_READ(cb, consumed);
  rp->len = len - e->consumed;
  struct pid *p = BPF_CORE_READ(cb, pid);
  __u32 uid = BPF_CORE_READ(cb, uid.val), gid = BPF_CORE_READ(cb, gid.val);
  __u32 secid = bpf_core_field_exists(cb->secid) ? BPF_CORE_READ(cb, secid) : 0;
  if (p) {
    rp->flags |= CRP_SKB_CREDS;
    rp->pid = pid_vnr(p);
    rp->uid = uid;
    rp->gid = gid;
  }
  /* unix_skb_scm_eq() against the last non-empty skb: a stream peek skips empty ones */
  if (e->have_prev && e->prev_pid == (__u64)p && e->prev_uid == uid && e->prev_gid == gid &&
      e->prev_secid == secid)
    rp->flags |= CRP_SKB_SAME;
  if (rp->len) {
    e->have_prev = 1;
    e->prev_pid = (__u64)p;
    e->prev_uid = uid;
    e->prev_gid = gid;
    e->prev_secid = secid;
  }
  if (BPF_CORE_READ_BITFIELD_PROBED(skb, peeked)) rp->flags |= CRP_SKB_PEEKED;
  if (e->sk_type == 2 /* SOCK_DGRAM */) {
    struct unix_sock *from = (void *)BPF_CORE_READ(skb, sk);
    struct unix_address *a = from ? BPF_CORE_READ(from, addr) : 0;
    if (a) {
      int alen = BPF_CORE_READ(a, len);
      if (alen > 2 && alen <= 110) {
        rp->flags |= CRP_SKB_ADDR;
        rp->addr_len = alen - 2;
        bpf_probe_read_kernel(rp->addr, sizeof(rp->addr),
                              (char *)a + bpf_core_field_offset(struct unix_address, name) + 2);
      }
    }
  }
  bpf_seq_write(e->seq, rp, sizeof(*rp));
  e->data = (__u64)BPF_CORE_READ(skb, data);
  e->shinfo = (__u64)BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end);
  e->linear = len - BPF_CORE_READ(skb, data_len);
  struct skb_shared_info *si = (void *)e->shinfo;
  e->nr_frags = BPF_CORE_READ(si, nr_frags);
  e->remaining = rp->len;
  e->pos = e->consumed; /* offset from skb->data */
  e->seg = 0;
  e->seg_start = 0;
}

/* After a failed read the rest of the skb's announced bytes are written as zeros, so the
 * stream stays parseable; the END record then says the queue is not to be trusted. */
static __always_inline long pad_step(struct qemit *e) {
  __u64 cnt = e->remaining > CRP_FAST_CHUNK ? CRP_FAST_CHUNK : e->remaining;
  asm volatile("" : "+r"(cnt));
  if (cnt == 0 || cnt > CRP_FAST_CHUNK) return 1;
  bpf_seq_write(e->seq, e->zeros->b, cnt);
  e->remaining -= cnt;
  return e->remaining == 0;
}

static __always_inline long fail_step(struct qemit *e) {
  e->failed = 1;
  return e->remaining == 0;
}

/* One step: start the next skb, or copy one chunk of the current one. */
static long emit_step(__u32 i, void *ctx) {
  struct qemit *e = ctx;
  if (e->failed) return pad_step(e);
  if (!e->copying) {
    if (!e->left) return 1;
    struct sk_buff *skb = (void *)rd64(e->skb ? (void *)&((struct sk_buff *)e->skb)->next
                                              : (void *)&((struct sk_buff_head *)e->head)->next);
    if (!skb || (__u64)skb == e->head) { e->failed = 1; return 1; } /* shrank under us */
    e->left--;
    put_skb_header(e, skb);
    e->skb = (__u64)skb;
    e->copying = e->remaining > 0;
    return 0;
  }
  __u64 src;
  __u32 seg_len;
  if (e->seg == 0) {
    src = e->data;
    seg_len = e->linear;
  } else {
    __u32 fi = e->seg - 1;
    if (fi >= e->nr_frags || fi >= 17) return fail_step(e);
    struct crp_frag f = {};
    __u64 fa = e->shinfo + bpf_core_field_offset(struct skb_shared_info, frags) +
               (__u64)fi * sizeof(struct crp_frag);
    if (bpf_probe_read_kernel(&f, sizeof(f), (void *)fa)) return fail_step(e);
    src = frag_addr(e->cal, &f);
    if (!src) return fail_step(e);
    seg_len = f.len;
  }
  if (e->pos >= e->seg_start + seg_len) {
    e->seg_start += seg_len;
    e->seg++;
    return 0;
  }
  __u32 n = e->seg_start + seg_len - e->pos;
  if (n > e->remaining) n = e->remaining;
  if (n > CRP_FAST_CHUNK) n = CRP_FAST_CHUNK;
  __u64 cnt = n;
  asm volatile("" : "+r"(cnt));
  if (cnt == 0 || cnt > CRP_FAST_CHUNK) return fail_step(e);
  if (bpf_probe_read_kernel(e->buf->b, cnt, (void *)(src + e->pos - e->seg_start)))
    return fail_step(e);
  bpf_seq_write(e->seq, e->buf->b, cnt);
  e->pos += n;
  e->remaining -= n;
  if (!e->remaining) e->copying = 0;
  return 0;
}

/* Everything about one unix socket: its USK record and, when it can be read whole, its
 * queue as SKB records closed by END. Reported once per socket (`reported`), even when
 * several fds hold it. */
static __always_inline void emit_unix(struct seq_file *seq, struct sock *sk) {
  __u32 zero = 0;
  __u64 sk_addr = (__u64)sk;
  __u32 ino = sock_ino(sk);
  if (!ino || bpf_map_lookup_elem(&reported, &ino)) return;
  struct crp_fast_usk r = {.type = CRP_FAST_USK, .size = sizeof(r), .ino = ino};
  __u32 rlevel = 0;
  __u64 rns = 0;
  reader_pid_ns(&rlevel, &rns);
  crp_read_usk_opts(sk, &r, CONFIG_HZ, rlevel, rns);

  struct unix_sock *u = (void *)sk;
  struct qscan q = {.head = sk_addr + bpf_core_field_offset(struct sock, sk_receive_queue),
                    .u = u, .cal = bpf_map_lookup_elem(&calib, &zero)};
  if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_LISTEN) {
    q.why = CRP_QW_LISTEN;
  } else if (bpf_core_field_exists(u->oob_skb) && BPF_CORE_READ(u, oob_skb)) {
    q.why = CRP_QW_OOB;
  } else {
    bpf_loop(CRP_FAST_MAX_SKBS + 1, scan_skb, &q, 0);
  }
  r.queue_why = q.why;
  if (q.why == CRP_QW_NONE) {
    r.flags |= CRP_USK_QUEUE;
    r.nskbs = q.n;
    r.qbytes = q.bytes;
  }
  long wr = bpf_seq_write(seq, &r, sizeof(r));
  if (q.why != CRP_QW_NONE) {
    if (!wr) bpf_map_update_elem(&reported, &ino, &zero, BPF_ANY);
    return;
  }

  struct qemit e = {.seq = seq, .cal = q.cal, .head = q.head, .ino = ino,
                   .sk_type = r.sk_type, .left = q.n};
  __u32 one = 1;
  e.buf = bpf_map_lookup_elem(&fast_scratch, &zero);
  e.zeros = bpf_map_lookup_elem(&fast_scratch, &one);
  e.rec = bpf_map_lookup_elem(&fast_skb_rec, &zero);
  if (e.buf && e.zeros && e.rec) {
    /* steps: one per skb plus one per chunk or fragment; the byte budget bounds the chunks */
    bpf_loop(CRP_FAST_MAX_SKBS * 24 + 64, emit_step, &e, 0);
  } else {
    e.failed = 1;
  }
  /* the queue ends with END: a failure (or a queue that changed) makes user space peek that
   * socket with syscalls instead */
  struct crp_fast_end end = {.type = CRP_FAST_END, .size = sizeof(end), .ino = ino,
                             .ok = !e.failed && !e.copying && e.left == 0};
  /* A read() gives the iterator a 32 KiB buffer; an fd whose output does not fit is shown
   * again at the start of the next read, its first output discarded. So the socket counts
   * as reported only once its last write fit (after a write that does not fit every later
   * one fails too: the seq file stays overflowed). */
  if (!bpf_seq_write(seq, &end, sizeof(end))) bpf_map_update_elem(&reported, &ino, &zero, BPF_ANY);
}

SEC("iter/task_file")
int fast_task_file(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file) return 0;
  __u32 zero = 0;
  struct crp_emb_config *cfg = bpf_map_lookup_elem(&fast_cfg, &zero);
  if (!cfg) return 0;
  if (cfg->mode == CRP_MODE_CALIB) {
    /* the probe socket is an fd of the collector itself: a pass over the collector finds it */
    struct inode___crp *pi = BPF_CORE_READ(file, f_inode);
    if ((__u32)BPF_CORE_READ(pi, i_ino) == cfg->probe_ino) {
      struct socket *psock = BPF_CORE_READ(file, private_data);
      struct sock *psk = BPF_CORE_READ(psock, sk);
      if (psk) calibrate(seq, psk, (__u64)psk, cfg);
    }
    return 0;
  }
  /* The process's table is its leader's (a thread that unshared its own is walked too). */
  if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid)) return 0;
  struct crp_fast_fd r = {.type = CRP_FAST_FD, .size = sizeof(r)};
  r.pid = BPF_CORE_READ(task, tgid);
  r.fd = ctx->fd;

  __u64 key = (__u64)file;
  __u32 *known = bpf_map_lookup_elem(&file_ids, &key);
  if (known) {
    r.file_id = *known;
  } else {
    /* one reader at a time (the collector reads its iterators one after another) */
    __u32 id = ++next_file_id;
    /* a full map (more fds than the fd tables had room for) leaves the id 0: unknown */
    r.file_id = bpf_map_update_elem(&file_ids, &key, &id, BPF_NOEXIST) ? 0 : id;
  }

  if (crp_cloexec(BPF_CORE_READ(task, files, fdt, close_on_exec), r.fd)) r.flags |= CRP_FD_CLOEXEC;
  r.f_flags = BPF_CORE_READ(file, f_flags);
  r.pos = BPF_CORE_READ(file, f_pos);
  struct inode___crp *inode = BPF_CORE_READ(file, f_inode);
  r.ino = BPF_CORE_READ(inode, i_ino);
  r.mode = BPF_CORE_READ(inode, i_mode);
  r.dev = BPF_CORE_READ(inode, i_sb, s_dev);
  int mnt_id = crp_mnt_id(BPF_CORE_READ(file, f_path.mnt));
  if (mnt_id >= 0) r.mnt_id = mnt_id;

  if (crp_read_owner(file, &r.own_pid_type, &r.own_signum)) r.flags |= CRP_FD_OWNER_PID;

  /* A typed pointer (the options are read with plain loads, kinds/unix_opts_bpf.h). */
  struct sock *sk = crp_file_sock(file, r.mode);
  if (sk) {
    r.flags |= CRP_FD_SOCKET;
    r.sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
    r.sk_type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);
  }
  bpf_seq_write(seq, &r, sizeof(r));
  if (sk && r.sk_family == 1 /* AF_UNIX */) emit_unix(seq, sk);
  return 0;
}
