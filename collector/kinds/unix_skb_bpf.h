/* SPDX-License-Identifier: GPL-2.0 */
/* What the BPF programs that read unix socket queues share: the kernel types they touch
 * (only the fields used, CO-RE relocated against the running kernel's BTF, so no vmlinux.h)
 * and the calibration that turns a page-fragment's struct page pointer into an address.
 * Included by kinds/unix_embryo_bpf.bpf.c and fast/fast_bpf.bpf.c; BPF only. */
#pragma once

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "unix_embryo_bpf_abi.h"

#define PAI __attribute__((preserve_access_index))
#define TCP_LISTEN 10
#define GIB (1ULL << 30)

struct seq_file;
struct bpf_iter_meta { struct seq_file *seq; } PAI;
struct sk_buff;
struct sk_buff_head { struct sk_buff *next; __u32 qlen; } PAI;
struct sock_common {
  unsigned short skc_family;
  unsigned char skc_state;
  unsigned char skc_reuse : 4;
  unsigned char skc_reuseport : 1;
  int skc_bound_dev_if;
  unsigned long skc_flags;
} PAI;
struct socket { short type; unsigned long flags; struct sock *sk; } PAI;
struct crp_kid { __u32 val; }; /* kuid_t / kgid_t */
struct upid { int nr; void *ns; } PAI;
struct pid { unsigned int level; struct upid numbers[1]; } PAI;
struct cred { struct crp_kid euid; struct crp_kid egid; } PAI;
struct files_struct;
struct task_struct { struct files_struct *files; int pid; int tgid; struct pid *thread_pid; } PAI;
struct sock {
  struct sock_common __sk_common;
  struct sk_buff_head sk_receive_queue;
  struct socket *sk_socket;
  unsigned char sk_shutdown;
  int sk_peek_off;
  unsigned char sk_userlocks;
  int sk_rcvbuf, sk_sndbuf;
  void *sk_filter;
  long sk_rcvtimeo, sk_sndtimeo;
  int sk_rcvlowat;
  __u32 sk_priority, sk_mark;
  unsigned short sk_type;
  unsigned char sk_no_check_tx : 1;
  unsigned long sk_lingertime;
  struct pid *sk_peer_pid;
  const struct cred *sk_peer_cred;
  unsigned char sk_scm_credentials : 1; /* 6.16+; before, SOCK_PASSCRED in socket->flags */
  unsigned char sk_scm_security : 1;
} PAI;
struct inode { unsigned long i_ino; } PAI;
struct socket_alloc { struct socket socket; struct inode vfs_inode; } PAI;
struct sockaddr_un { unsigned short sun_family; char sun_path[108]; };
struct unix_address { int len; struct sockaddr_un name[1]; } PAI;
struct unix_sock {
  struct sock sk;
  struct unix_address *addr;
  struct sock *peer;
  struct sk_buff *oob_skb;
} PAI;
struct bpf_iter__unix { struct bpf_iter_meta *meta; struct unix_sock *unix_sk; } PAI;
struct sk_buff {
  struct sk_buff *next;
  struct sock *sk;
  char cb[48];
  unsigned int len, data_len, end;
  unsigned char *head, *data;
  __u8 peeked : 1;
} PAI;
struct scm_fp_list { short count; } PAI;
/* UNIXCB(skb) lives in skb->cb (net/unix/af_unix.h); __randomize_layout is fine for CO-RE. */
struct unix_skb_parms {
  struct pid *pid;
  struct crp_kid uid, gid;
  struct scm_fp_list *fp;
  __u32 secid;
  __u32 consumed;
} PAI;
/* skb_frag_t: {struct page *bv_page; len; offset} before 6.7 (bio_vec), {netmem_ref netmem;
 * len; offset} since; same 16-byte layout, netmem bit 0 marks a net_iov (never in unix). */
struct crp_frag { __u64 page; __u32 len, off; };
struct skb_shared_info {
  unsigned char nr_frags;
  struct sk_buff *frag_list;
  struct crp_frag frags[1];
} PAI;
struct page { unsigned long flags; } PAI;

static __always_inline __u64 rd64(const void *p) {
  __u64 v = 0;
  bpf_probe_read_kernel(&v, sizeof(v), p);
  return v;
}

/* The reading task's (the collector's) pid namespace as pid_nr_in() wants it: the level of
 * its pid and that level's namespace. 0 when unknown. */
static __always_inline int reader_pid_ns(__u32 *level, __u64 *ns) {
  struct task_struct *cur = (void *)bpf_get_current_task();
  struct pid *mine = BPF_CORE_READ(cur, thread_pid);
  if (!mine) return 0;
  *level = BPF_CORE_READ(mine, level);
  if (*level > 32) return 0;
  __u64 off = bpf_core_field_offset(struct pid, numbers);
  __u64 usz = bpf_core_type_size(struct upid);
  *ns = rd64((char *)mine + off + *level * usz + bpf_core_field_offset(struct upid, ns));
  return *ns != 0;
}

/* The number of pid `p` in the namespace at `level` that is `ns`, 0 if it has none there. */
static __always_inline __u32 pid_nr_in(struct pid *p, __u32 level, __u64 ns) {
  if (!p || !ns || level > 32) return 0;
  if (BPF_CORE_READ(p, level) < level) return 0;
  __u64 off = bpf_core_field_offset(struct pid, numbers);
  __u64 at = off + level * bpf_core_type_size(struct upid);
  if (rd64((char *)p + at + bpf_core_field_offset(struct upid, ns)) != ns) return 0;
  int nr = 0;
  bpf_probe_read_kernel(&nr, sizeof(nr), (char *)p + at + bpf_core_field_offset(struct upid, nr));
  return (__u32)nr;
}

/* pid_vnr() as the reading task (the collector) sees it: the pid's number in the reader's
 * active pid namespace, 0 if the pid is not visible there. */
static __always_inline __u32 pid_vnr(struct pid *p) {
  __u32 level = 0;
  __u64 ns = 0;
  if (!p || !reader_pid_ns(&level, &ns)) return 0;
  return pid_nr_in(p, level, ns);
}

/* sock_i_ino(): the inode of sk->sk_socket, 0 for a sock without one (an embryo before
 * accept(), or an orphaned one whose owner closed it). Works before and after 6.17's sk_ino. */
static __always_inline __u32 sock_ino(struct sock *sk) {
  struct socket *sock = BPF_CORE_READ(sk, sk_socket);
  if (!sock) return 0;
  struct socket_alloc *sa =
      (void *)((char *)sock - bpf_core_field_offset(struct socket_alloc, socket));
  return (__u32)BPF_CORE_READ(sa, vfs_inode.i_ino);
}

/* Paged skb data (frags) is only reachable through struct page pointers. On x86-64 a page's
 * kernel address is direct_base + pfn * 4096 and pfn = (page - vmemmap_base) / sizeof(page),
 * but both bases are randomized (KASLR) and not exported as BTF or kallsyms data. The
 * calibration pass derives them from a page user space owns and knows the pfn of, and stores
 * them here; user space never reads this map, so no kernel address leaves the kernel. */
struct crp_calib { __u64 vmemmap, direct, page_sz; __u32 ok, pad; };
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct crp_calib);
} calib SEC(".maps");

/* The kernel address of the bytes of one page fragment, 0 if not calibrated or not a page. */
static __always_inline __u64 frag_addr(const struct crp_calib *cal, const struct crp_frag *f) {
  if (!cal || !cal->ok || !cal->page_sz || (f->page & 1)) return 0;
  __u64 pfn = (f->page - cal->vmemmap) / cal->page_sz;
  return cal->direct + (pfn << 12) + f->off; /* compound pages are contiguous */
}

struct scan {
  __u64 lo, pfn, found;
  struct crp_emb_config *cfg;
};

/* Calibration candidate i: is the probe page at direct_base = lo + i GiB? (The direct map
 * base is 1 GiB aligned with and without KASLR.) Candidates run upwards from below the true
 * base, so reads land below it (unmapped, or the LDT remap) or inside the direct map, which
 * maps RAM only: never vmalloc/ioremap space. A wrong guess faults harmlessly. */
static long scan_step(__u32 i, void *ctx) {
  struct scan *s = ctx;
  __u64 base = s->lo + (__u64)i * GIB;
  __u64 got[8];
  if (bpf_probe_read_kernel(got, sizeof(got), (void *)(base + (s->pfn << 12)))) return 0;
  const __u64 *want = (const __u64 *)s->cfg->cookie; /* complemented by user space */
  for (int k = 0; k < 8; k++)
    if (got[k] != ~want[k]) return 0;
  s->found = base;
  return 1;
}

/* The calibration pass (CRP_MODE_CALIB, see unix_embryo_probe.h) on the probe socket `sk`:
 * emits one CRP_REC_CALIB record with the outcome. */
static __always_inline void calibrate(struct seq_file *seq, struct sock *sk, __u64 sk_addr,
                                      struct crp_emb_config *cfg) {
  __u32 zero = 0, status = CRP_CALIB_NO_FRAG;
  struct crp_calib *cal = bpf_map_lookup_elem(&calib, &zero);
  if (!cal) return;
  cal->ok = 0;
  struct sk_buff *skb = BPF_CORE_READ(sk, sk_receive_queue.next);
  if (skb && (__u64)skb != sk_addr + bpf_core_field_offset(struct sock, sk_receive_queue)) {
    __u64 shinfo = (__u64)BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, end);
    struct crp_frag f = {};
    struct skb_shared_info *si = (void *)shinfo;
    if (BPF_CORE_READ(si, nr_frags) > 0 &&
        !bpf_probe_read_kernel(&f, sizeof(f),
                               (void *)(shinfo + bpf_core_field_offset(struct skb_shared_info,
                                                                      frags))) &&
        f.page && !(f.page & 1)) {
      __u64 sz = bpf_core_type_size(struct page);
      struct scan s = {.pfn = cfg->probe_pfn, .cfg = cfg};
      __u64 hi = sk_addr & ~(GIB - 1); /* sk is in the direct map: base <= sk */
      __u64 span = (cfg->max_phys + GIB - 1) & ~(GIB - 1);
      s.lo = hi - span;
      if (s.lo < 0xff00000000000000ULL || s.lo > hi) s.lo = 0xff00000000000000ULL;
      __u64 n = ((hi - s.lo) >> 30) + 1;
      if (n > 65536) n = 65536;
      bpf_loop((__u32)n, scan_step, &s, 0);
      status = CRP_CALIB_NOT_FOUND;
      if (s.found) {
        cal->vmemmap = f.page - cfg->probe_pfn * sz;
        cal->direct = s.found;
        cal->page_sz = sz;
        cal->ok = 1;
        status = CRP_CALIB_OK;
      }
    }
  }
  struct crp_emb_rec r = {.type = CRP_REC_CALIB, .arg = {status}};
  bpf_seq_write(seq, &r, sizeof(r));
}
