#include "coordinator/inject/tree_injector.h"

#include <linux/sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <thread>

#include "common/vma.h"
#include "coordinator/inject/page_fill.h"
#include "common/proc.h"
#include "common/ptrace/regs.h"

namespace crpipe::inject {

namespace {

// Waits for `tid` to be in a PTRACE_EVENT_STOP; signal-delivery stops on the way are
// swallowed (a restorer ignores or dies of every signal it might get meanwhile).
Status waitEventStop(pid_t tid, const std::string& what) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) {
        continue;
      }
      return fail(Error::sys("tid " + std::to_string(tid) + ": " + what + ": waitpid"));
    }
    if (!WIFSTOPPED(status)) {
      return failMsg("tid " + std::to_string(tid) + ": " + what + ": the restorer ended (status " +
                     std::to_string(status) + ")");
    }
    if ((status >> 16) == PTRACE_EVENT_STOP) {
      return {};
    }
    if (::ptrace(PTRACE_CONT, tid, nullptr, nullptr) < 0) {
      return fail(Error::sys("tid " + std::to_string(tid) + ": " + what + ": PTRACE_CONT"));
    }
  }
}

}  // namespace

TreeInjector::TreeInjector(const RestoreImages& images, const RestorePlan& plan, Log& log)
    : images_(images), plan_(plan), log_(log) {}

TreeInjector::~TreeInjector() {
  // A failed restore: the coordinator killed the tree; the sessions only find dead threads.
  tasks_.clear();
  dropShmemObjects();
  unpinCoordinator();
}

void TreeInjector::pinCoordinator() {
  if (pinned_ || ::sched_getaffinity(0, sizeof(coordinatorMask_), &coordinatorMask_) < 0) {
    return;
  }
  cpu_ = ::sched_getcpu();
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu_, &one);
  pinned_ = cpu_ >= 0 && ::sched_setaffinity(0, sizeof(one), &one) == 0;
}

void TreeInjector::unpinCoordinator() {
  if (pinned_) {
    ::sched_setaffinity(0, sizeof(coordinatorMask_), &coordinatorMask_);
    pinned_ = false;
  }
}

uint64_t TreeInjector::threadCount() const {
  uint64_t n = 0;
  for (const auto& t : taskImages_) {
    n += t.threads.size();
  }
  return n;
}

Status TreeInjector::load() {
  for (const auto& tp : plan_.tasks) {
    auto ti = loadTaskImage(images_, tp.pstree);
    if (!ti) {
      return fail(std::move(ti).error().context("pid " + std::to_string(tp.pid)));
    }
    taskImages_.push_back(std::move(*ti));
  }
  auto sh = loadShmemImages(images_);
  if (!sh) {
    return fail(std::move(sh).error());
  }
  shmemImages_ = std::move(*sh);
  return {};
}

Status TreeInjector::createShmemObjects() {
  // Each object as large as its largest use (offset + length) in any task.
  std::map<uint64_t, uint64_t> sizes;
  for (const auto& t : taskImages_) {
    for (const auto& v : t.mm.vmas()) {
      if ((v.status() & kVmaAnonShared) != 0) {
        uint64_t& sz = sizes[v.shmid()];
        sz = std::max<uint64_t>(sz, v.pgoff() + (v.end() - v.start()));
      }
    }
  }
  for (const auto& [shmid, size] : sizes) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return failSys("shared anonymous object " + std::to_string(shmid) + ": mmap " +
                     std::to_string(size) + " bytes");
    }
    ShmemObject obj;
    obj.addr = reinterpret_cast<uint64_t>(p);
    obj.size = size;
    char path[128];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", ::getpid(),
             static_cast<unsigned long long>(obj.addr),
             static_cast<unsigned long long>(obj.addr + size));
    obj.path = path;
    shmem_.emplace(shmid, obj);
    auto runs = shmemImages_.find(shmid);
    if (runs == shmemImages_.end()) {
      continue;  // never written: zeroes
    }
    size_t off = 0;
    for (const auto& e : runs->second.entries) {
      size_t len = e.nr_pages() * 4096;
      if (e.vaddr() + len > size) {
        return failMsg("pagemap-shmem-" + std::to_string(shmid) + ".img: pages at offset " +
                       std::to_string(e.vaddr()) + " lie beyond every mapping of the object");
      }
      // Not memcpy: the pages may be a mapping of pages-N.img, and a file truncated under
      // the restore would be SIGBUS here; process_vm_readv on ourselves reports EFAULT.
      iovec dst{static_cast<char*>(p) + e.vaddr(), len};
      iovec src{const_cast<char*>(runs->second.pages.data()) + off, len};
      size_t copied = 0;
      while (copied < len) {
        ssize_t n = ::process_vm_readv(::getpid(), &dst, 1, &src, 1, 0);
        if (n <= 0) {
          return fail(Error::sys(n < 0 ? errno : EFAULT,
                                 "pagemap-shmem-" + std::to_string(shmid) +
                                     ".img: copy of its pages (was pages-N.img changed?)"));
        }
        copied += static_cast<size_t>(n);
        dst.iov_base = static_cast<char*>(dst.iov_base) + n;
        dst.iov_len -= static_cast<size_t>(n);
        src.iov_base = static_cast<char*>(src.iov_base) + n;
        src.iov_len -= static_cast<size_t>(n);
      }
      off += len;
    }
    bytesFilled_ += off;
  }
  return {};
}

void TreeInjector::dropShmemObjects() {
  for (const auto& [id, obj] : shmem_) {
    ::munmap(reinterpret_cast<void*>(obj.addr), obj.size);
  }
  shmem_.clear();
}

Status TreeInjector::seize(pid_t pid) {
  if (::ptrace(PTRACE_SEIZE, pid, nullptr, reinterpret_cast<void*>(kTraceOptions)) < 0) {
    return fail(Error::sys("pid " + std::to_string(pid) + ": PTRACE_SEIZE of its restorer"));
  }
  seized_.push_back(pid);
  if (::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr) < 0) {
    return fail(Error::sys("pid " + std::to_string(pid) + ": PTRACE_INTERRUPT"));
  }
  return waitEventStop(pid, "stop the restorer");
}

// A task's pages being written by a thread of their own: process_vm_writev needs no ptrace
// stop, so while it faults the task's memory in on one CPU, the coordinator goes on
// injecting syscalls into the next task on the other.
struct TreeInjector::FillJob {
  InjectedTask* task = nullptr;
  Status status;
  uint64_t bytes = 0;
  std::jthread thread;  // last: joined first when the job goes, before the fields it writes
};

Status TreeInjector::restoreMemory() {
  CRPIPE_TRY(createShmemObjects());
  pinCoordinator();
  // Pipelined by one task: task i's pages are written while task i+1 is seized and mapped,
  // and task i is finished (protections, process state, threads) only once they are in.
  // A failure returns at once; the jobs' threads are joined as the deque goes.
  std::deque<std::unique_ptr<FillJob>> fills;
  for (size_t i = 0; i < plan_.tasks.size(); ++i) {
    auto t = std::make_unique<InjectedTask>();
    t->pid = plan_.tasks[i].pid;
    t->image = &taskImages_[i];
    t->files = &plan_.files;
    t->shmem = &shmem_;
    t->serviceFdBase = plan_.serviceFdBase;
    t->log = &log_;
    tasks_.push_back(std::move(t));
    CRPIPE_TRY(prepareTask(*tasks_.back()));
    // Every fill split in two, though the injection runs beside it: measured on the
    // 64 x 8 MiB tree, memory phase 400 -> 270 ms against splitting only the last task's.
    fills.push_back(startFill(*tasks_.back(), true));
    if (fills.size() > 1) {
      CRPIPE_TRY(completeTask(*fills.front()));
      fills.pop_front();
    }
  }
  while (!fills.empty()) {
    CRPIPE_TRY(completeTask(*fills.front()));
    fills.pop_front();
  }
  // Every sharer mapped its objects: the coordinator's own mappings can go.
  dropShmemObjects();
  log_.debug("memory: %.1f ms waiting for pages the injection did not hide",
             static_cast<double>(fillWaitNs_) / 1e6);
  return {};
}

Status TreeInjector::prepareTask(InjectedTask& t) {
  if (pinned_ && ::sched_getaffinity(t.pid, sizeof(t.affinity), &t.affinity) == 0) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu_, &one);
    t.pinned = ::sched_setaffinity(t.pid, sizeof(one), &one) == 0;  // threads inherit it
    t.coordinatorMask = &coordinatorMask_;
    t.cpu = cpu_;
  }
  CRPIPE_TRY(seize(t.pid));
  auto regs = getRegs(t.pid);
  if (!regs) {
    return fail(std::move(regs).error());
  }
  auto insn = findSyscallInsn(t.pid, *regs);
  if (!insn) {
    return fail(std::move(insn).error());
  }
  auto s = SyscallSession::begin(t.pid, *insn, kTraceOptions);
  if (!s) {
    return fail(std::move(s).error());
  }
  t.threads.push_back({t.pid, &t.image->threads[0], std::move(*s)});

  std::vector<std::pair<uint64_t, uint64_t>> current;
  {
    auto maps = readProcFile("/proc/" + std::to_string(t.pid) + "/maps");
    if (!maps) {
      return fail(std::move(maps).error());
    }
    size_t pos = 0;
    while (pos < maps->size()) {
      unsigned long long a = 0, b = 0;
      if (sscanf(maps->c_str() + pos, "%llx-%llx", &a, &b) == 2) {
        current.emplace_back(a, b);
      }
      size_t nl = maps->find('\n', pos);
      pos = nl == std::string::npos ? maps->size() : nl + 1;
    }
  }
  CRPIPE_TRY(mapTrampoline(t, current));
  return mapAddressSpace(t);
}

std::unique_ptr<TreeInjector::FillJob> TreeInjector::startFill(InjectedTask& t, bool split) {
  auto job = std::make_unique<FillJob>();
  job->task = &t;
  FillJob* j = job.get();
  job->thread = std::jthread([j, split]() {
    // Born with the coordinator's one-CPU pin: the copy takes no ptrace stop, so it may
    // run on whichever CPU is free.
    if (j->task->coordinatorMask != nullptr) {
      ::sched_setaffinity(0, sizeof(*j->task->coordinatorMask), j->task->coordinatorMask);
    }
    j->status = fillPages(j->task->pid, j->task->image->pages, &j->bytes, split);
  });
  return job;
}

Status TreeInjector::completeTask(FillJob& job) {
  timespec a{}, b{};
  ::clock_gettime(CLOCK_MONOTONIC, &a);
  job.thread.join();
  ::clock_gettime(CLOCK_MONOTONIC, &b);
  fillWaitNs_ += static_cast<uint64_t>((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec));
  InjectedTask& t = *job.task;
  CRPIPE_TRY_CTX(std::move(job.status), t.where());
  bytesFilled_ += job.bytes;
  CRPIPE_TRY(finishAddressSpace(t));
  CRPIPE_TRY(restoreProcessState(t));
  CRPIPE_TRY(createThreads(t));
  for (auto& th : t.threads) {
    CRPIPE_TRY(restoreThreadState(t, th));
  }
  CRPIPE_TRY(queuePendingSignals(t));
  for (auto& th : t.threads) {
    CRPIPE_TRY(restoreCredentials(t, th));
    setFinalRegisters(th);
  }
  return {};
}

Status TreeInjector::createThreads(InjectedTask& t) {
  // Each thread with its dumped tid, by clone3 inside the task; PTRACE_O_TRACECLONE gives
  // it to us stopped before it runs an instruction, so its registers are ours to set.
  for (size_t i = 1; i < t.image->threads.size(); ++i) {
    const ThreadImage& ti = t.image->threads[i];
    const std::string w = t.where() + " thread " + std::to_string(ti.tid);
    int32_t tid = ti.tid;
    auto tidAddr = t.put(1024, &tid, sizeof(tid));
    if (!tidAddr) {
      return fail(std::move(tidAddr).error());
    }
    clone_args args{};
    args.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                 CLONE_SYSVSEM;
    args.set_tid = *tidAddr;
    args.set_tid_size = 1;
    auto argsAddr = t.put(0, &args, sizeof(args));
    if (!argsAddr) {
      return fail(std::move(argsAddr).error());
    }
    auto r = t.leader().callChecked("clone3", SYS_clone3, {*argsAddr, sizeof(args)});
    if (!r) {
      if (r.error().err() == EEXIST) {
        auto stat = readProcFile("/proc/" + std::to_string(ti.tid) + "/stat");
        auto st = stat ? parseProcStat(*stat) : Result<ProcStat>(fail(stat.error()));
        return failMsg(w + ": the tid is taken by another process" +
                       (st ? " (" + st->comm + ", parent " + std::to_string(st->ppid) + ")"
                           : std::string()) +
                       " since the restore checked it");
      }
      return fail(std::move(r).error().context(w));
    }
    if (static_cast<pid_t>(*r) != ti.tid) {
      return failMsg(w + ": clone3 gave tid " + std::to_string(*r));
    }
    CRPIPE_TRY(waitEventStop(ti.tid, "new thread"));
    auto s = SyscallSession::begin(ti.tid, t.trampoline, kTraceOptions);
    if (!s) {
      return fail(std::move(s).error().context(w));
    }
    t.threads.push_back({ti.tid, &ti, std::move(*s)});
  }
  return {};
}

Status TreeInjector::resume() {
  for (auto& t : tasks_) {
    // Threads first: the leader's last injected syscall unmaps the trampoline they ran on.
    for (size_t i = t->threads.size(); i-- > 0;) {
      auto& th = t->threads[i];
      if (i == 0) {
        CRPIPE_TRY_CTX(th.session->callChecked("munmap", SYS_munmap,
                                               {t->trampoline, kTrampolineSize}),
                       t->where() + ": unmap the trampoline");
      }
      CRPIPE_TRY_CTX(th.session->end(), t->where() + ": registers of tid " + std::to_string(th.tid));
      CRPIPE_TRY_CTX(restoreFpu(th.tid, *th.image), t->where());
      if (t->pinned && ::sched_setaffinity(th.tid, sizeof(t->affinity), &t->affinity) < 0) {
        return fail(Error::sys(t->where() + ": give tid " + std::to_string(th.tid) +
                               " its CPU affinity back"));
      }
    }
  }
  unpinCoordinator();
  // Every thread of every task is ready: let them all go.
  for (auto& t : tasks_) {
    for (auto& th : t->threads) {
      if (::ptrace(PTRACE_DETACH, th.tid, nullptr, nullptr) < 0) {
        return fail(Error::sys(t->where() + ": PTRACE_DETACH tid " + std::to_string(th.tid)));
      }
    }
  }
  tasks_.clear();
  return {};
}

}  // namespace crpipe::inject
