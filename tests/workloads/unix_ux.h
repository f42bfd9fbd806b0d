/* Helpers shared by the unix socket workloads (unix_*.c): sending with control messages,
 * inode numbers, and draining a queue to check it is still what was queued. */
#pragma once

#include "wl.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static inline unsigned long ux_ino(int fd) {
  struct stat st;
  WL_MUST(fstat(fd, &st) == 0);
  return (unsigned long)st.st_ino;
}

/* sendmsg with optional SCM_RIGHTS (nfds fds) and/or SCM_CREDENTIALS of this process. */
static inline void ux_send(int sk, const void* data, size_t len, const int* fds, int nfds,
                           int creds) {
  char control[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))];
  memset(control, 0, sizeof(control));
  struct iovec iov = {(void*)data, len};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  size_t used = 0;
  if (nfds > 0 || creds) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    if (nfds > 0) {
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
      used += CMSG_SPACE(sizeof(int) * nfds);
      c = CMSG_NXTHDR(&mh, c);
    }
    if (creds) {
      struct ucred u = {getpid(), getuid(), getgid()};
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_CREDENTIALS;
      c->cmsg_len = CMSG_LEN(sizeof(u));
      memcpy(CMSG_DATA(c), &u, sizeof(u));
      used += CMSG_SPACE(sizeof(u));
    }
    mh.msg_controllen = used;
  }
  WL_MUST(sendmsg(sk, &mh, 0) == (ssize_t)len);
}

/* One received message: its bytes, the fds it carried, whether credentials came. */
struct ux_msg {
  ssize_t len;
  char data[4096];
  int fds[8];
  int nfds;
  int has_creds;
  struct ucred creds;
  struct sockaddr_un from;
  socklen_t fromlen;
};

static inline int ux_recv(int sk, struct ux_msg* m, int flags) {
  char control[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))];
  struct iovec iov = {m->data, sizeof(m->data)};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  memset(&m->from, 0, sizeof(m->from));
  mh.msg_name = &m->from;
  mh.msg_namelen = sizeof(m->from);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  m->len = recvmsg(sk, &mh, flags | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  m->nfds = 0;
  m->has_creds = 0;
  m->fromlen = mh.msg_namelen;
  if (m->len < 0) return -1;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_type == SCM_RIGHTS) {
      m->nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      memcpy(m->fds, CMSG_DATA(c), sizeof(int) * m->nfds);
    } else if (c->cmsg_type == SCM_CREDENTIALS) {
      m->has_creds = 1;
      memcpy(&m->creds, CMSG_DATA(c), sizeof(m->creds));
    }
  }
  return 0;
}

static inline int ux_peek_off(int sk) {
  int v = -2;
  socklen_t l = sizeof(v);
  WL_MUST(getsockopt(sk, SOL_SOCKET, SO_PEEK_OFF, &v, &l) == 0);
  return v;
}

static inline void ux_set_int(int sk, int opt, int v) {
  WL_MUST(setsockopt(sk, SOL_SOCKET, opt, &v, sizeof(v)) == 0);
}

/* Expects the next record of a dgram/seqpacket socket to be exactly `want` (len bytes)
 * with `nfds` files. */
static inline void ux_expect_record(int sk, const char* what, const void* want, size_t len,
                                    int nfds) {
  struct ux_msg m;
  if (ux_recv(sk, &m, 0) < 0) {
    WL_CHECK(0, "%s: recvmsg: %s", what, strerror(errno));
    return;
  }
  WL_CHECK(m.len == (ssize_t)len && memcmp(m.data, want, len) == 0,
           "%s: got %zd bytes, want %zu", what, m.len, len);
  WL_CHECK(m.nfds == nfds, "%s: got %d fds, want %d", what, m.nfds, nfds);
  for (int i = 0; i < m.nfds; i++) close(m.fds[i]);
}

/* Reads a stream until `len` bytes arrived; checks them and the fds that came along. */
static inline void ux_expect_stream(int sk, const char* what, const void* want, size_t len,
                                    int nfds) {
  char buf[8192];
  size_t got = 0;
  int fds = 0;
  while (got < len) {
    struct ux_msg m;
    if (ux_recv(sk, &m, 0) < 0 || m.len <= 0) {
      WL_CHECK(0, "%s: stream ended after %zu of %zu bytes", what, got, len);
      return;
    }
    if (got + (size_t)m.len > sizeof(buf)) break;
    memcpy(buf + got, m.data, (size_t)m.len);
    got += (size_t)m.len;
    fds += m.nfds;
    for (int i = 0; i < m.nfds; i++) close(m.fds[i]);
  }
  WL_CHECK(got == len && memcmp(buf, want, len) == 0, "%s: stream bytes differ", what);
  WL_CHECK(fds == nfds, "%s: got %d fds, want %d", what, fds, nfds);
}

static inline void ux_expect_empty(int sk, const char* what) {
  struct ux_msg m;
  int r = ux_recv(sk, &m, 0);
  WL_CHECK(r < 0 && errno == EAGAIN, "%s: queue not empty at the end (len %zd)", what, m.len);
}

/* The next bytes waiting on sk (without blocking) are exactly the string `want`. */
static inline void ux_expect_now(int sk, const char* want) {
  char buf[64] = {0};
  ssize_t n = recv(sk, buf, sizeof(buf) - 1, MSG_DONTWAIT);
  WL_CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, strlen(want)) == 0,
           "queue: got %zd '%s', want '%s'", n, n > 0 ? buf : "", want);
}
