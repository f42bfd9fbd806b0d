/* Records of the fast path's BPF iterators (fast_bpf.bpf.c, C) as fast_records.cc (C++)
 * parses them. Plain C with fixed-size types: both compilers must lay these out identically.
 * Every record starts with {type, size}; `size` counts the header, not data that follows. */
#pragma once

#include <linux/types.h>

#include "../kinds/unix_embryo_bpf_abi.h"

/* One socket's output must fit the iterator's per-object seq buffer (PAGE_SIZE << 3); a
 * queue larger than this, or with more skbs, is left to the syscall path. */
#define CRP_FAST_SOCK_BYTES (32768 - 2048)
#define CRP_FAST_MAX_SKBS 128
#define CRP_FAST_CHUNK 4096

enum crp_fast_rec_type {
  CRP_FAST_FD = 1,   /* struct crp_fast_fd, iter/task_file: one per fd */
  CRP_FAST_USK = 2,  /* struct crp_fast_usk, iter/unix: one per wanted socket */
  CRP_FAST_SKB = 3,  /* struct crp_fast_skb, after its socket's USK; `len` data bytes follow */
  CRP_FAST_END = 4,  /* struct crp_fast_end: closes the SKB records of a CRP_USK_QUEUE socket */
};

enum crp_fast_fd_flags {
  CRP_FD_CLOEXEC = 1,
  CRP_FD_OWNER_PID = 2, /* f_owner has a pid set: F_GETOWN_EX must say who (syscall path) */
  CRP_FD_SOCKET = 4,    /* S_ISSOCK; sk_family/sk_type valid */
};

struct crp_fast_fd {
  __u32 type, size;
  __u32 pid, fd;       /* tgid of the task, fd number */
  __u32 flags;         /* CRP_FD_* */
  __u32 f_flags;       /* file->f_flags (fdinfo "flags" without O_CLOEXEC) */
  __u64 pos;           /* file->f_pos */
  __u64 ino;           /* file_inode(file)->i_ino */
  __u32 dev;           /* i_sb->s_dev, the kernel's MAJOR << 20 | MINOR */
  __u32 mode;          /* i_mode */
  __s32 mnt_id;        /* real_mount(f_path.mnt)->mnt_id */
  __u32 file_id;       /* per-dump id of the open file description (1, 2, ...) */
  __u32 own_pid_type;  /* f_owner->pid_type (PIDTYPE_*), 0 without f_owner */
  __u32 own_signum;    /* f_owner->signum */
  __u32 sk_family;
  __u32 sk_type;
};

enum crp_fast_usk_flags {
  CRP_USK_PASSCRED = 1 << 0,
  CRP_USK_PASSSEC = 1 << 1,
  CRP_USK_LINGER = 1 << 2,
  CRP_USK_KEEPALIVE = 1 << 3,
  CRP_USK_BROADCAST = 1 << 4,
  CRP_USK_DONTROUTE = 1 << 5,
  CRP_USK_OOBINLINE = 1 << 6,
  CRP_USK_NO_CHECK = 1 << 7,
  CRP_USK_REUSEPORT = 1 << 8,
  CRP_USK_FILTER = 1 << 9,    /* a classic BPF filter is attached: read it with SO_GET_FILTER */
  CRP_USK_PEER_PID = 1 << 10, /* sk_peer_pid set: peer_pid/uid/gid valid */
  CRP_USK_QUEUE = 1 << 11,    /* the receive queue follows as SKB records, complete */
};

/* Why the queue was not read (queue_why), when CRP_USK_QUEUE is clear. */
enum crp_fast_queue_why {
  CRP_QW_NONE = 0,      /* read */
  CRP_QW_LISTEN = 1,    /* a listener: its queue holds connections, not data */
  CRP_QW_BIG = 2,       /* more bytes or skbs than one record budget */
  CRP_QW_RIGHTS = 3,    /* SCM_RIGHTS: the files need real descriptors */
  CRP_QW_OOB = 4,       /* a pending MSG_OOB byte */
  CRP_QW_LAYOUT = 5,    /* frag_list, net_iov, or paged data without calibration */
  CRP_QW_READ = 6,      /* a kernel read failed */
};

struct crp_fast_usk {
  __u32 type, size;
  __u32 ino;
  __u32 flags;         /* CRP_USK_* */
  __u32 queue_why;     /* CRP_QW_* */
  __u32 sk_type;
  __s32 sndbuf, rcvbuf;
  __u32 userlocks;     /* sk_userlocks */
  __u32 reuse;         /* sk_reuse */
  __s64 sndtimeo, rcvtimeo; /* jiffies, LONG_MAX for none */
  __u64 lingertime;    /* jiffies */
  __u32 priority, mark;
  __s32 rcvlowat, peek_off;
  __s32 bound_dev_if;
  __u32 hz;            /* CONFIG_HZ, 0 if unknown */
  __u32 peer_pid;      /* pid_vnr(sk_peer_pid) of the reader: 0 if not visible */
  __u32 peer_uid, peer_gid; /* sk_peer_cred euid/egid (kernel values) */
  __u32 nskbs, qbytes; /* what follows when CRP_USK_QUEUE */
};

enum crp_fast_skb_flags {
  CRP_SKB_CREDS = 1,     /* UNIXCB(skb).pid set */
  CRP_SKB_SAME = 2,      /* same pid pointer, uid, gid and secid as the skb before */
  CRP_SKB_PEEKED = 4,    /* skb->peeked (a zero-length record someone peeked at) */
  CRP_SKB_ADDR = 8,      /* sender's address in addr/addr_len */
};

struct crp_fast_skb {
  __u32 type, size;
  __u32 ino;
  __u32 len;           /* unix_skb_len(): data bytes that follow */
  __u32 flags;         /* CRP_SKB_* */
  __u32 pid, uid, gid; /* credentials: pid in the reader's namespace */
  __u32 addr_len;      /* sun_path bytes of the sender's name */
  __u32 pad;
  char addr[108];
  __u32 pad2;
};

struct crp_fast_end {
  __u32 type, size;
  __u32 ino;
  __u32 ok; /* 0: a read failed or the queue changed: the SKB records are not to be used */
};

/* The `fast_cfg` map holds one struct crp_emb_config (unix_embryo_bpf_abi.h): mode and,
 * for CRP_MODE_CALIB, the probe the shared page calibration needs. */
