/* What a program can observe about itself besides memory and signals (issue 4, "the rest a
 * program can observe"), each set away from its default, in the main thread and in a second
 * thread where the kernel keeps it per thread: comm, nice, the robust futex list head, the
 * tid address (clear_child_tid); per process: personality, no_new_privs, dumpable, THP
 * disabled, supplementary groups, real/effective/saved gids, a saved uid, and a capability
 * dropped from the effective set. Each value is read back before READY; after restore
 * every one must read the same (both threads compare their own).
 * Needs root (setgroups, setresgid). */
#include "wl.h"

#include <linux/capability.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <grp.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#ifndef PR_SET_THP_DISABLE
#define PR_SET_THP_DISABLE 41
#define PR_GET_THP_DISABLE 42
#endif

struct per_thread {
  char comm[16];
  int nice;
  void* robust_head;
  size_t robust_len;
  int* tid_address;
};

struct per_process {
  int personality;
  int no_new_privs;
  int dumpable;
  int thp_disabled;
  int ngroups;
  gid_t groups[8];
  gid_t rgid, egid, sgid;
  uid_t ruid, euid, suid;
  uint32_t cap_eff0, cap_prm0, cap_eff1, cap_prm1;
};

static void read_thread(struct per_thread* t) {
  memset(t, 0, sizeof(*t));
  WL_MUST(prctl(PR_GET_NAME, t->comm) == 0);
  errno = 0;
  t->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
  WL_MUST(errno == 0);
  WL_MUST(syscall(SYS_get_robust_list, 0, &t->robust_head, &t->robust_len) == 0);
  WL_MUST(prctl(PR_GET_TID_ADDRESS, &t->tid_address) == 0);
}

static void read_process(struct per_process* p) {
  memset(p, 0, sizeof(*p));
  p->personality = personality(0xffffffff);
  p->no_new_privs = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  p->dumpable = prctl(PR_GET_DUMPABLE);
  p->thp_disabled = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  p->ngroups = getgroups(8, p->groups);
  WL_MUST(p->ngroups >= 0);
  WL_MUST(getresgid(&p->rgid, &p->egid, &p->sgid) == 0);
  WL_MUST(getresuid(&p->ruid, &p->euid, &p->suid) == 0);
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  WL_MUST(syscall(SYS_capget, &h, d) == 0);
  p->cap_eff0 = d[0].effective;
  p->cap_prm0 = d[0].permitted;
  p->cap_eff1 = d[1].effective;
  p->cap_prm1 = d[1].permitted;
}

static int same_thread(const struct per_thread* a, const struct per_thread* b, const char* who) {
  int ok = 1;
#define SAME(f, fmt)                                                                  \
  if (a->f != b->f) {                                                                 \
    printf("check failed: %s " #f " " fmt " after restore, was " fmt "\n", who, b->f, a->f); \
    ok = 0;                                                                           \
  }
  if (strcmp(a->comm, b->comm) != 0) {
    printf("check failed: %s comm '%s' after restore, was '%s'\n", who, b->comm, a->comm);
    ok = 0;
  }
  SAME(nice, "%d")
  SAME(robust_head, "%p")
  SAME(robust_len, "%zu")
  SAME(tid_address, "%p")
  return ok;
}

static pthread_barrier_t ready;
static struct per_thread second_before;
static volatile int second_result = -1;

static void* second(void* arg) {
  (void)arg;
  WL_MUST(prctl(PR_SET_NAME, "crp-second") == 0);
  WL_MUST(setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 7) == 0);
  /* A robust list head of its own, away from glibc's. */
  static struct robust_list_head head;
  head.list.next = &head.list;
  WL_MUST(syscall(SYS_set_robust_list, &head, sizeof(head)) == 0);
  read_thread(&second_before);
  pthread_barrier_wait(&ready);
  pthread_barrier_wait(&ready); /* after restore: the main thread asks */
  struct per_thread now;
  read_thread(&now);
  second_result = same_thread(&second_before, &now, "second thread");
  pthread_barrier_wait(&ready);
  return NULL;
}

int main(void) {
  wl_init();
  WL_MUST(prctl(PR_SET_NAME, "crp-identity") == 0);
  WL_MUST(setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 3) == 0);
  static int my_tid_word;
  syscall(SYS_set_tid_address, &my_tid_word);
  WL_MUST(personality(PER_LINUX | ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC) != -1);
  WL_MUST(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0);
  gid_t groups[] = {5, 6, 7};
  WL_MUST(setgroups(3, groups) == 0);
  WL_MUST(setresgid(0, 42, 43) == 0);
  WL_MUST(setresuid(0, 0, 1234) == 0); /* a saved uid of its own; still root in effect */
  /* Drop CAP_NET_RAW from the effective set only: permitted keeps it. */
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  WL_MUST(syscall(SYS_capget, &h, d) == 0);
  d[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
  WL_MUST(syscall(SYS_capset, &h, d) == 0);
  WL_MUST(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
  WL_MUST(prctl(PR_SET_DUMPABLE, 0) == 0);

  WL_MUST(pthread_barrier_init(&ready, NULL, 2) == 0);
  pthread_t t;
  WL_MUST(pthread_create(&t, NULL, second, NULL) == 0);
  pthread_barrier_wait(&ready);
  struct per_thread main_before, main_now;
  struct per_process proc_before, proc_now;
  read_thread(&main_before);
  read_process(&proc_before);
  WL_MUST(proc_before.dumpable == 0 && proc_before.no_new_privs == 1 && proc_before.egid == 42);
  printf("READY {\"pid\": %d}\n", getpid());
  wl_wait_verify();

  read_thread(&main_now);
  read_process(&proc_now);
  if (!same_thread(&main_before, &main_now, "main thread")) wl_failed = 1;
  struct per_process* a = &proc_before;
  struct per_process* b = &proc_now;
  int ok = 1;
  const char* who = "process";
  SAME(personality, "%#x")
  SAME(no_new_privs, "%d")
  SAME(dumpable, "%d")
  SAME(thp_disabled, "%d")
  SAME(ngroups, "%d")
  SAME(rgid, "%u")
  SAME(egid, "%u")
  SAME(sgid, "%u")
  SAME(ruid, "%u")
  SAME(euid, "%u")
  SAME(suid, "%u")
  SAME(cap_eff0, "%#x")
  SAME(cap_prm0, "%#x")
  SAME(cap_eff1, "%#x")
  SAME(cap_prm1, "%#x")
  if (!ok) wl_failed = 1;
  for (int i = 0; i < a->ngroups && i < b->ngroups; ++i) {
    WL_CHECK(a->groups[i] == b->groups[i], "group %d: %u after restore, was %u", i, b->groups[i],
             a->groups[i]);
  }
  pthread_barrier_wait(&ready); /* the second thread compares */
  pthread_barrier_wait(&ready);
  WL_CHECK(second_result == 1, "the second thread's state was not kept");
  pthread_join(t, NULL);
  return wl_finish();
}
