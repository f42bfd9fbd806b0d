/* Records and map values shared by unix_embryo_bpf.bpf.c (BPF, C) and unix_embryo_queues.cc
 * (C++). Plain C with fixed-size types: both compilers must lay these out identically. */
#pragma once

#include <linux/types.h>

/* Limits the brief asks for: beyond them a listener is reported as an error, never cut short. */
#define CRP_EMB_MAX_EMBRYOS 4096 /* not-yet-accepted connections per listener */
#define CRP_EMB_MAX_MSGS 4096    /* skbs per embryo receive queue */
#define CRP_EMB_CHUNK 4096       /* payload bytes per DATA record */

/* bpf_seq_read() gives each object (socket) one seq buffer of PAGE_SIZE << 3 bytes and fails
 * the read with E2BIG when a single show() overflows it. So one pass emits at most this much
 * per listener and ends with a MORE record; user space resumes from there in the next pass. */
#define CRP_EMB_PASS_BYTES (32768 - 1024)

enum crp_emb_rec_type {
  CRP_REC_EMBRYO = 1, /* arg: embryo ino, peer ino, sk_shutdown, queue length */
  CRP_REC_MSG = 2,    /* arg: length, CRP_MSG_* flags, fd count, cred pid, uid, gid */
  CRP_REC_DATA = 3,   /* arg: offset in the message, length; `length` payload bytes follow */
  CRP_REC_MORE = 4,   /* budget used up; resume at (embryo_idx, msg_idx, arg[0] = offset) */
  CRP_REC_END = 5,    /* listener done; arg[0] = number of embryos */
  CRP_REC_ERROR = 6,  /* arg[0] = CRP_ERR_*, arg[1] = detail */
  CRP_REC_CALIB = 7,  /* calibration pass result; arg[0] = CRP_CALIB_* */
  CRP_REC_PEERCRED = 8, /* right after each EMBRYO: arg: 1 if the embryo has a peer pid, that
                         * pid (as the collector's pid namespace sees it), euid, egid */
};

enum crp_emb_msg_flags {
  CRP_MSG_RIGHTS = 1, /* UNIXCB(skb).fp != NULL: SCM_RIGHTS files ride on this skb */
  CRP_MSG_CREDS = 2,  /* UNIXCB(skb).pid != NULL: the kernel stored sender credentials */
  CRP_MSG_OOB = 4,    /* the skb is unix_sk(embryo)->oob_skb (MSG_OOB byte) */
};

enum crp_emb_err {
  CRP_ERR_TOO_MANY_EMBRYOS = 1,
  CRP_ERR_TOO_MANY_MSGS = 2,
  CRP_ERR_READ = 3,        /* a kernel read failed (queue changing under us?) */
  CRP_ERR_NO_CALIB = 4,    /* paged (frag) data but page addresses could not be calibrated */
  CRP_ERR_UNSUPPORTED = 5, /* frag_list or net_iov frags: layouts unix sockets never build */
  CRP_ERR_LOOP = 6,        /* the step bound ran out (cannot happen within the limits) */
};

enum crp_emb_calib_status {
  CRP_CALIB_OK = 1,
  CRP_CALIB_NO_FRAG = 2,   /* the probe socket's skb had no page fragment */
  CRP_CALIB_NOT_FOUND = 3, /* the probe page was not found in the direct map */
};

/* One record header in the iterator's seq file. */
struct crp_emb_rec {
  __u32 type;
  __u32 listener_ino;
  __u32 embryo_idx; /* position in the listener's accept queue, 0 = accepted first */
  __u32 msg_idx;    /* position in the embryo's receive queue */
  __u32 arg[6];
};

/* Value of the `listeners` hash map (key: listener inode): where the next pass starts. */
struct crp_emb_cursor {
  __u32 embryo_idx;
  __u32 msg_idx;
  __u32 offset;
  __u32 done; /* 1: nothing more to emit for this listener */
};

enum crp_emb_mode { CRP_MODE_DUMP = 0, CRP_MODE_CALIB = 1 };

/* Value 0 of the `config` array map, written by user space before each pass. */
struct crp_emb_config {
  __u32 mode;
  __u32 probe_ino;  /* calibration: the socket whose first skb holds the probe page */
  __u64 probe_pfn;  /* ... and that page's frame number, from /proc/self/pagemap */
  __u64 max_phys;   /* highest "System RAM" address + 1, from /proc/iomem */
  __u8 cookie[64];  /* the first 64 bytes of the probe page */
};
