// SPDX-License-Identifier: GPL-2.0
/* BPF iterator over unix sockets (SEC("iter/unix"), Linux >= 5.17) that reads, without
 * consuming anything, the connections a listener has not accept()ed yet ("embryos") and the
 * data their clients already sent. Records (unix_embryo_bpf_abi.h) go to the iterator's
 * seq file; unix_embryo_queues.cc loads this program and parses them.
 *
 * Kernel layout (net/unix/af_unix.c, unix_stream_connect): connect() creates the server-side
 * sock ("embryo"), points unix_sk(embryo)->peer at the client, and queues an skb whose
 * skb->sk is the embryo on the listener's sk_receive_queue; accept() dequeues it. Data the
 * client sends goes to the embryo's own sk_receive_queue, one skb per write chunk.
 *
 * Locking: since 6.x bpf_iter_unix_seq_show() runs us under lock_sock_fast(listener) and
 * with a reference held on the listener (the batch), but af_unix guards its queues with
 * sk_receive_queue.lock and unix_state_lock, which BPF cannot take. We read lock-free:
 *  - nothing we visit can be freed while the dumped tree is frozen: skbs leave the listener
 *    queue only by accept() or close() of the listener, and an embryo queue only by recvmsg
 *    on the accepted socket -- all done by the frozen tree; the GC only collects queues of
 *    unreachable in-flight sockets, and a listener held by a task's fd is reachable;
 *  - what can still happen is a client outside the tree appending (connect, sendmsg); an
 *    append links a fully built skb at the tail, so we see it or the old tail->head link;
 *  - every load is bpf_probe_read_kernel (copy_from_kernel_nofault): a torn pointer yields
 *    an error record, never an oops; loops are bounded by bpf_loop counts.
 * We never write kernel memory, take no kernel lock, and keep no state between passes
 * except what user space puts in the maps, so the dumped processes are left untouched.
 *
 * The kernel types (CO-RE) and the page calibration are shared with the fast path
 * (unix_skb_bpf.h). */
#include "unix_skb_bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define REC ((__u32)sizeof(struct crp_emb_rec))

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* user space sizes it to the listener set before loading */
  __type(key, __u32);
  __type(value, struct crp_emb_cursor);
} listeners SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct crp_emb_config);
} config SEC(".maps");

struct crp_buf { __u8 b[CRP_EMB_CHUNK]; };
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct crp_buf);
} scratch SEC(".maps");

/* Records are built in map memory, not on the stack: the verifier tracks every stack slot
 * of a record built at seven places, and its states stopped matching (463,000 instructions
 * processed of the 1,000,000 allowed, 0.7 s a load on Linux 6.18). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct crp_emb_rec);
} recbuf SEC(".maps");

enum { PH_NEXT_EMBRYO, PH_NEXT_MSG, PH_DATA };

/* The walk is a flat state machine driven by one bpf_loop: one step per embryo, per skb,
 * per skipped fragment or per chunk of data. */
struct walk {
  struct seq_file *seq;
  struct crp_buf *buf;
  struct crp_emb_rec *rec;
  struct crp_calib *cal;
  __u64 lq_head, lskb, eq_head, eskb, embryo, data, shinfo;
  __u32 ino, phase, embryo_idx, msg_idx, cur_embryo, cur_msg, cur_off;
  __u32 len, data_len, consumed, msg_len, off, seg, seg_start, nr_frags, emitted, stop;
};

static __always_inline void put(struct walk *w, __u32 type, __u32 a0, __u32 a1, __u32 a2,
                                __u32 a3, __u32 a4, __u32 a5) {
  struct crp_emb_rec *r = w->rec;
  r->type = type;
  r->listener_ino = w->ino;
  r->embryo_idx = w->embryo_idx;
  r->msg_idx = w->msg_idx;
  r->arg[0] = a0;
  r->arg[1] = a1;
  r->arg[2] = a2;
  r->arg[3] = a3;
  r->arg[4] = a4;
  r->arg[5] = a5;
  bpf_seq_write(w->seq, r, sizeof(*r));
  w->emitted += REC;
}

static __always_inline long fail(struct walk *w, __u32 code, __u32 detail) {
  put(w, CRP_REC_ERROR, code, detail, 0, 0, 0, 0);
  w->stop = 1;
  return 1;
}

/* Pass budget spent: tell user space where to resume (this embryo, message and offset). */
static __always_inline long more(struct walk *w, __u32 off) {
  put(w, CRP_REC_MORE, off, 0, 0, 0, 0, 0);
  w->stop = 1;
  return 1;
}

static __always_inline int room(struct walk *w, __u32 n) {
  /* always keep one header free for the closing MORE/END/ERROR record */
  return w->emitted + n + REC <= CRP_EMB_PASS_BYTES;
}

static __always_inline long next_embryo(struct walk *w) {
  struct sk_buff *next;
  if (w->lskb)
    next = (void *)rd64(&((struct sk_buff *)w->lskb)->next);
  else
    next = (void *)rd64(&((struct sk_buff_head *)w->lq_head)->next);
  if (!next) return fail(w, CRP_ERR_READ, 1);
  if ((__u64)next == w->lq_head) {
    put(w, CRP_REC_END, w->embryo_idx + 1, 0, 0, 0, 0, 0);
    w->stop = 1;
    return 1;
  }
  w->lskb = (__u64)next;
  w->embryo_idx++;
  w->msg_idx = 0;
  if (w->embryo_idx >= CRP_EMB_MAX_EMBRYOS) return fail(w, CRP_ERR_TOO_MANY_EMBRYOS, 0);
  if (w->embryo_idx < w->cur_embryo) return 0;
  struct sock *embryo = (void *)rd64(&next->sk);
  if (!embryo) return fail(w, CRP_ERR_READ, 2);
  if (!room(w, 2 * REC)) return more(w, 0); /* unreachable at a pass start: no livelock */
  struct unix_sock *uembryo = (void *)embryo;
  struct sock *peer = BPF_CORE_READ(uembryo, peer);
  __u32 peer_ino = peer ? sock_ino(peer) : 0;
  __u32 shutdown = BPF_CORE_READ_BITFIELD_PROBED(embryo, sk_shutdown);
  __u32 qlen = BPF_CORE_READ(embryo, sk_receive_queue.qlen);
  put(w, CRP_REC_EMBRYO, sock_ino(embryo), peer_ino, shutdown, qlen, 0, 0);
  /* What SO_PEERCRED of the accepted socket will say: connect() stamped the embryo with the
   * connecting task's tgid and credentials (init_peercred). No fd reads it before accept. */
  struct pid *ppid = BPF_CORE_READ(embryo, sk_peer_pid);
  const struct cred *pcred = BPF_CORE_READ(embryo, sk_peer_cred);
  __u32 has = ppid ? 1 : 0;
  __u32 puid = pcred ? BPF_CORE_READ(pcred, euid.val) : (__u32)-1;
  __u32 pgid = pcred ? BPF_CORE_READ(pcred, egid.val) : (__u32)-1;
  put(w, CRP_REC_PEERCRED, has, pid_vnr(ppid), puid, pgid, 0, 0);
  w->embryo = (__u64)embryo;
  w->eq_head = (__u64)&embryo->sk_receive_queue;
  w->eskb = 0;
  w->msg_idx = (__u32)-1;
  w->phase = PH_NEXT_MSG;
  return 0;
}

static __always_inline long next_msg(struct walk *w) {
  struct sk_buff *skb;
  if (w->eskb)
    skb = (void *)rd64(&((struct sk_buff *)w->eskb)->next);
  else
    skb = (void *)rd64(&((struct sk_buff_head *)w->eq_head)->next);
  if (!skb) return fail(w, CRP_ERR_READ, 3);
  if ((__u64)skb == w->eq_head) {
    w->phase = PH_NEXT_EMBRYO;
    return 0;
  }
  w->eskb = (__u64)skb;
  w->msg_idx++;
  if (w->msg_idx >= CRP_EMB_MAX_MSGS) return fail(w, CRP_ERR_TOO_MANY_MSGS, 0);
  int resume = w->embryo_idx == w->cur_embryo;
  if (resume && w->msg_idx < w->cur_msg) return 0;
  __u32 start = (resume && w->msg_idx == w->cur_msg) ? w->cur_off : 0;

  struct unix_skb_parms *cb = (void *)&skb->cb;
  w->len = BPF_CORE_READ(skb, len);
  w->data_len = BPF_CORE_READ(skb, data_len);
  w->data = (__u64)BPF_CORE_READ(skb, data);
  w->shinfo = (__u64)BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end);
  struct skb_shared_info *shinfo = (void *)w->shinfo;
  w->nr_frags = BPF_CORE_READ(shinfo, nr_frags);
  /* a stream reader advances UNIXCB(skb).consumed instead of trimming the skb; an embryo
   * has had no reader, but honour it anyway */
  w->consumed = BPF_CORE_READ(cb, consumed);
  if (w->consumed > w->len || w->data_len > w->len) return fail(w, CRP_ERR_READ, 4);
  w->msg_len = w->len - w->consumed;
  if (start > w->msg_len) return fail(w, CRP_ERR_READ, 5);

  __u32 flags = 0, nfds = 0, pid = 0, uid = 0, gid = 0;
  struct scm_fp_list *fp = BPF_CORE_READ(cb, fp);
  if (fp) {
    flags |= CRP_MSG_RIGHTS;
    nfds = (__u32)BPF_CORE_READ(fp, count);
  }
  struct pid *p = BPF_CORE_READ(cb, pid);
  if (p) {
    flags |= CRP_MSG_CREDS;
    pid = BPF_CORE_READ(p, numbers[0].nr); /* the pid in the initial pid namespace */
    uid = BPF_CORE_READ(cb, uid.val);      /* kuid/kgid: initial user namespace values */
    gid = BPF_CORE_READ(cb, gid.val);
  }
  struct unix_sock *embryo = (void *)w->embryo;
  if (bpf_core_field_exists(struct unix_sock, oob_skb) &&
      (__u64)BPF_CORE_READ(embryo, oob_skb) == (__u64)skb)
    flags |= CRP_MSG_OOB;
  if (!room(w, REC)) return more(w, start);
  put(w, CRP_REC_MSG, w->msg_len, flags, nfds, pid, uid, gid);
  w->off = start;
  w->seg = 0;
  w->seg_start = 0;
  w->phase = PH_DATA;
  return 0;
}

static __always_inline long data_step(struct walk *w) {
  if (w->off >= w->msg_len) {
    w->phase = PH_NEXT_MSG;
    return 0;
  }
  __u32 abs = w->consumed + w->off; /* offset from skb->data */
  __u64 src;
  __u32 seg_len;
  if (w->seg == 0) { /* the linear part: skb->data, len - data_len bytes */
    seg_len = w->len - w->data_len;
    src = w->data;
  } else { /* page fragments, in order, after the linear part */
    __u32 fi = w->seg - 1;
    if (fi >= w->nr_frags) return fail(w, CRP_ERR_UNSUPPORTED, 1); /* bytes in frag_list */
    struct crp_frag f = {};
    __u64 fa = w->shinfo + bpf_core_field_offset(struct skb_shared_info, frags) +
               (__u64)fi * sizeof(struct crp_frag);
    if (bpf_probe_read_kernel(&f, sizeof(f), (void *)fa)) return fail(w, CRP_ERR_READ, 6);
    if (f.page & 1) return fail(w, CRP_ERR_UNSUPPORTED, 2); /* net_iov, not a page */
    src = frag_addr(w->cal, &f);
    if (!src) return fail(w, CRP_ERR_NO_CALIB, 0);
    seg_len = f.len;
  }
  if (abs >= w->seg_start + seg_len) { /* not in this segment: move to the next one */
    w->seg_start += seg_len;
    w->seg++;
    return 0;
  }
  __u32 n = w->seg_start + seg_len - abs;
  if (n > w->msg_len - w->off) n = w->msg_len - w->off;
  if (!room(w, REC + 1)) return more(w, w->off);
  __u32 avail = CRP_EMB_PASS_BYTES - w->emitted - 2 * REC;
  if (n > avail) n = avail;
  if (n > CRP_EMB_CHUNK) n = CRP_EMB_CHUNK;
  __u64 cnt = n;
  asm volatile("" : "+r"(cnt)); /* bound-check and use the same 64-bit register */
  if (cnt == 0 || cnt > CRP_EMB_CHUNK) return fail(w, CRP_ERR_READ, 7);
  src += abs - w->seg_start;
  if (bpf_probe_read_kernel(w->buf->b, cnt, (void *)src)) return fail(w, CRP_ERR_READ, 8);
  put(w, CRP_REC_DATA, w->off, n, 0, 0, 0, 0);
  bpf_seq_write(w->seq, w->buf->b, cnt);
  w->emitted += n;
  w->off += n;
  return 0;
}

static long step(__u32 i, void *ctx) {
  struct walk *w = ctx;
  if (w->phase == PH_NEXT_EMBRYO) return next_embryo(w);
  if (w->phase == PH_NEXT_MSG) return next_msg(w);
  return data_step(w);
}

SEC("iter/unix")
int dump_unix_embryos(struct bpf_iter__unix *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  __u64 sk_addr = 0;
  /* a plain copy, so the verifier treats the address as a number from here on */
  bpf_probe_read_kernel(&sk_addr, sizeof(sk_addr), &ctx->unix_sk);
  if (!sk_addr) return 0; /* the final call after the last socket */
  struct sock *sk = (void *)sk_addr;
  __u32 zero = 0;
  struct crp_emb_config *cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg) return 0;
  __u32 ino = sock_ino(sk);
  if (!ino) return 0;
  if (cfg->mode == CRP_MODE_CALIB) {
    if (ino == cfg->probe_ino) calibrate(seq, sk, sk_addr, cfg);
    return 0;
  }
  struct crp_emb_cursor *cur = bpf_map_lookup_elem(&listeners, &ino);
  if (!cur || cur->done) return 0;
  if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN) return 0;

  struct walk w = {};
  w.seq = seq;
  w.buf = bpf_map_lookup_elem(&scratch, &zero);
  if (!w.buf) return 0;
  w.rec = bpf_map_lookup_elem(&recbuf, &zero);
  if (!w.rec) return 0;
  w.cal = bpf_map_lookup_elem(&calib, &zero);
  w.ino = ino;
  w.lq_head = sk_addr + bpf_core_field_offset(struct sock, sk_receive_queue);
  w.embryo_idx = (__u32)-1;
  w.cur_embryo = cur->embryo_idx;
  w.cur_msg = cur->msg_idx;
  w.cur_off = cur->offset;
  /* steps per pass: skipping <= 4096 embryos and <= 4096 skbs to the cursor, then at most
   * ~1600 records within the byte budget, plus fragment skips */
  bpf_loop(1 << 16, step, &w, 0);
  if (!w.stop) fail(&w, CRP_ERR_LOOP, 0);
  return 0;
}
