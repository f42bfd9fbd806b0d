/* SPDX-License-Identifier: GPL-2.0 */
/* A unix socket's SOL_SOCKET state as getsockopt would report it, and its peer's
 * credentials, read from struct sock: the options part of a crp_fast_usk record
 * (fast/fast_bpf_abi.h). Shared by the fast path (fast/fast_bpf.bpf.c) and the fd-table
 * iterator (fdtable/fd_table.bpf.c); user space turns the record into the entry's options
 * (kinds/unix_fast.cc). BPF only; include after unix_skb_bpf.h. */
#pragma once

#include "../fast/fast_bpf_abi.h"

enum sock_flags {
  SOCK_URGINLINE = 2, SOCK_KEEPOPEN = 3, SOCK_LINGER = 4, SOCK_BROADCAST = 6,
  SOCK_LOCALROUTE = 13,
};

static __always_inline int crp_sk_flag(unsigned long flags, int bit) {
  return (flags >> bit) & 1;
}

/* Fills r's flags (but CRP_USK_QUEUE), sk_type and option fields; leaves the header, the
 * inode and the queue fields to the caller. `sk` must be a typed pointer the verifier
 * knows (bpf_sock_from_file(file)->sk): its fields are read with plain loads, checked
 * against the kernel's BTF (a helper call per field cost nine tenths of an iterator's
 * time). `hz`: CONFIG_HZ, or 0 where the program does not know it (user space then reads
 * timeouts and linger, which are in jiffies, with getsockopt). `rd_level` and
 * `rd_ns`: the collector's pid namespace (reader_pid_ns()), for the peer's pid. */
static __always_inline void crp_read_usk_opts(struct sock *sk, struct crp_fast_usk *r,
                                              unsigned int hz, __u32 rd_level,
                                              __u64 rd_ns) {
  unsigned long flags = sk->__sk_common.skc_flags;
  if (crp_sk_flag(flags, bpf_core_enum_value(enum sock_flags, SOCK_LINGER))) r->flags |= CRP_USK_LINGER;
  if (crp_sk_flag(flags, bpf_core_enum_value(enum sock_flags, SOCK_KEEPOPEN))) r->flags |= CRP_USK_KEEPALIVE;
  if (crp_sk_flag(flags, bpf_core_enum_value(enum sock_flags, SOCK_BROADCAST))) r->flags |= CRP_USK_BROADCAST;
  if (crp_sk_flag(flags, bpf_core_enum_value(enum sock_flags, SOCK_LOCALROUTE))) r->flags |= CRP_USK_DONTROUTE;
  if (crp_sk_flag(flags, bpf_core_enum_value(enum sock_flags, SOCK_URGINLINE))) r->flags |= CRP_USK_OOBINLINE;
  if (BPF_CORE_READ_BITFIELD(sk, sk_no_check_tx)) r->flags |= CRP_USK_NO_CHECK;
  if (BPF_CORE_READ_BITFIELD(&sk->__sk_common, skc_reuseport)) r->flags |= CRP_USK_REUSEPORT;
  r->reuse = BPF_CORE_READ_BITFIELD(&sk->__sk_common, skc_reuse);
  if (bpf_core_field_exists(sk->sk_scm_credentials)) {
    if (BPF_CORE_READ_BITFIELD(sk, sk_scm_credentials)) r->flags |= CRP_USK_PASSCRED;
    if (BPF_CORE_READ_BITFIELD(sk, sk_scm_security)) r->flags |= CRP_USK_PASSSEC;
  } else {
    /* before 6.16: SOCK_PASSCRED (3) and SOCK_PASSSEC (4) in socket->flags */
    unsigned long sf = sk->sk_socket->flags;
    if ((sf >> 3) & 1) r->flags |= CRP_USK_PASSCRED;
    if ((sf >> 4) & 1) r->flags |= CRP_USK_PASSSEC;
  }
  if (sk->sk_filter) r->flags |= CRP_USK_FILTER;
  r->sk_type = BPF_CORE_READ_BITFIELD(sk, sk_type);
  r->sndbuf = sk->sk_sndbuf;
  r->rcvbuf = sk->sk_rcvbuf;
  r->userlocks = BPF_CORE_READ_BITFIELD(sk, sk_userlocks);
  r->sndtimeo = sk->sk_sndtimeo;
  r->rcvtimeo = sk->sk_rcvtimeo;
  r->lingertime = sk->sk_lingertime;
  r->priority = sk->sk_priority;
  r->mark = sk->sk_mark;
  r->rcvlowat = sk->sk_rcvlowat;
  r->peek_off = sk->sk_peek_off;
  r->bound_dev_if = sk->__sk_common.skc_bound_dev_if;
  r->hz = hz;
  struct pid *peer = sk->sk_peer_pid;
  if (peer) {
    r->flags |= CRP_USK_PEER_PID;
    r->peer_pid = pid_nr_in(peer, rd_level, rd_ns);
    const struct cred *c = sk->sk_peer_cred;
    r->peer_uid = c ? c->euid.val : (__u32)-1;
    r->peer_gid = c ? c->egid.val : (__u32)-1;
  }
}
