#include "collector/task/task_state.h"

#include <fcntl.h>

#include <chrono>

#include "collector/task/core_image.h"
#include "collector/task/kobj_ids.h"
#include "collector/task/mm_dump.h"
#include "collector/task/task_files.h"
#include "collector/task/thread_state.h"
#include "common/proc.h"
#include "common/ptrace/regs.h"
#include "common/ptrace/syscall_session.h"
#include "protos/fs.pb.h"

namespace crpipe::collector::task {

namespace {

Status writeFs(DumpContext& ctx, TaskFiles& files, pid_t pid, const ThreadState& leader) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  images::FsEntry fs;
  auto cwd = files.idFor(ctx, pid, dir + "cwd", O_RDONLY | O_DIRECTORY);
  if (!cwd) {
    return fail(std::move(cwd).error().context("pid " + std::to_string(pid) + ": cwd"));
  }
  auto root = files.idFor(ctx, pid, dir + "root", O_RDONLY | O_DIRECTORY);
  if (!root) {
    return fail(std::move(root).error().context("pid " + std::to_string(pid) + ": root"));
  }
  fs.set_cwd_id(*cwd);
  fs.set_root_id(*root);
  if (leader.status.hasUmask) {
    fs.set_umask(leader.status.umask);
  }
  return ctx.out.entryTo("fs-" + std::to_string(pid) + ".img", fs);
}

Status collectProcess(DumpContext& ctx, KobjIds& kobj, MmDumpState& mmState,
                      const FrozenProcess& p) {
  const std::string where = "pid " + std::to_string(p.pid);
  // /proc/PID/timers lists the POSIX timers (timer_create) of the process, one "ID:" each.
  auto timers = readProcFile("/proc/" + std::to_string(p.pid) + "/timers");
  if (timers && timers->find("ID:") != std::string::npos) {
    return failMsg(where + " has POSIX timers (timer_create); crpipe cannot dump them yet, "
                           "nothing was dumped");
  }
  // Memory first: its pages are on their way (copied by the serializer, with --page-refs)
  // while the task is asked the rest. The scratch mapping of the syscalls injected below
  // comes after the mappings are read, so it is in no image.
  auto mm = dumpMm(ctx, mmState, p.pid);
  if (!mm) {
    return fail(std::move(mm).error());
  }
  ProcessState proc;
  std::vector<ThreadState> threads;
  uint64_t insn = 0;
  for (pid_t tid : p.threads) {
    const bool leader = tid == p.pid;
    if (insn == 0) {
      // Every thread shares the address space: one `syscall` instruction serves them all.
      auto regs = inject::getRegs(tid);
      if (!regs) {
        return fail(std::move(regs).error());
      }
      auto found = inject::findSyscallInsn(p.pid, *regs);
      if (!found) {
        return fail(std::move(found).error());
      }
      insn = *found;
    }
    auto t = readThread(p.pid, tid, insn, leader ? &proc : nullptr);
    if (!t) {
      return fail(std::move(t).error());
    }
    // A signal the freeze caught on its way to delivery was first in the queue.
    if (auto c = p.caught.find(tid); c != p.caught.end()) {
      t->pending.insert(t->pending.begin(), c->second.begin(), c->second.end());
    }
    if (leader && t->status.state == 'T') {
      return failMsg(where + " is stopped (job control); crpipe cannot dump stopped "
                             "processes yet, nothing was dumped");
    }
    threads.push_back(std::move(*t));
  }
  if (threads.empty() || threads.front().tid != p.pid) {
    return failMsg(where + ": the thread group leader is gone (a zombie leader with live "
                           "threads); crpipe cannot dump it");
  }
  for (const auto& t : threads) {
    auto core = threadCore(p.pid, t);
    if (!core) {
      return fail(std::move(core).error());
    }
    if (t.tid == p.pid) {
      CRPIPE_TRY(addTaskCore(p.pid, t, proc, *core));
      auto ids = kobj.idsFor(p.pid);
      if (!ids) {
        return fail(std::move(ids).error());
      }
      *core->mutable_ids() = *ids;
    }
    CRPIPE_TRY(ctx.out.entryTo("core-" + std::to_string(t.tid) + ".img", *core));
  }
  mm->set_mm_brk(proc.brk);
  mm->set_dumpable(proc.dumpable);
  mm->set_thp_disabled(proc.thpDisabled);
  CRPIPE_TRY(ctx.out.entryTo("mm-" + std::to_string(p.pid) + ".img", *mm));
  CRPIPE_TRY(writeFs(ctx, mmState.files, p.pid, threads.front()));
  return {};
}

}  // namespace

TaskStateDump::TaskStateDump(const DumpContext& ctx)
    : mm_(files_, PageWriter::batchBytesFor(ctx.out), ctx.opts.pageRefs) {
  mm_.pagemapScan = ctx.opts.pagemapScan ? -1 : 0;
}

Status TaskStateDump::memory(DumpContext& ctx, const FrozenTree& tree) {
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& p : tree.processes()) {
    CRPIPE_TRY(dumpPrivateMemoryEarly(ctx, mm_, p.pid));
  }
  if (!ctx.opts.pageRefs) {
    // The last batch read is written before the fds' entries follow.
    CRPIPE_TRY(mm_.buffer.drain());
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  ctx.log.debug("private memory of %zu processes on its way: %lu pages in %lld us (%s)",
                mm_.early.size(), static_cast<unsigned long>(mm_.pagesDumped),
                static_cast<long long>(us),
                mm_.pagemapScan == 1   ? "runs from PAGEMAP_SCAN"
                : mm_.pagemapScan == 0 ? "pagemap read entry by entry"
                                       : "no page table read yet");
  return {};
}

Status TaskStateDump::rest(DumpContext& ctx, const FrozenTree& tree, ProgressSink& progress) {
  auto t0 = std::chrono::steady_clock::now();
  KobjIds kobj;
  MmDumpState& mm = mm_;
  uint64_t done = 0;
  const uint64_t total = tree.processes().size();
  for (const auto& p : tree.processes()) {
    CRPIPE_TRY(collectProcess(ctx, kobj, mm, p));
    progress.progress("tasks", ++done, total,
                      "pid " + std::to_string(p.pid) + ", " +
                          std::to_string(mm.pagesDumped * kPageSize >> 20) + " MiB of pages");
  }
  CRPIPE_TRY(mm.buffer.drain());  // the last batch of pages, still being read
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0)
                .count();
  ctx.log.info("task state: %zu processes, %zu threads, %lu pages in %lld ms",
               tree.processes().size(), tree.threadCount(),
               static_cast<unsigned long>(mm.pagesDumped), static_cast<long long>(ms));
  return {};
}

}  // namespace crpipe::collector::task
