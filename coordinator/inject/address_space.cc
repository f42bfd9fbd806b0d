// The address space of a restored task, built inside the seized restorer by injected
// syscalls: the restorer's own memory goes, the vDSO and vvar move to where the task had
// them (same kernel, so the same code), every VMA comes back at its address, and the pages
// the dump stored are written in with process_vm_writev straight from the images the
// coordinator holds — one copy, in batches of up to IOV_MAX runs (page_fill.cc, driven by
// tree_injector.cc between mapAddressSpace and finishAddressSpace).
#include <fcntl.h>
#include <sched.h>
#include <linux/mman.h>
#include <linux/rseq.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "common/vma.h"
#include "common/proc.h"
#include "common/ptrace/remote_mem.h"
#include "coordinator/inject/injected_task.h"

namespace crpipe::inject {

namespace {

constexpr uint64_t kPage = 4096;
// The top of the user address space with 4-level page tables; nothing crpipe restores lies
// above it (5-level tasks only get higher addresses when they ask for them).
constexpr uint64_t kTaskSize = 0x7ffffffff000ull;

struct Mapping {
  uint64_t start, end;
  std::string name;
};

Result<std::vector<Mapping>> currentMappings(pid_t pid) {
  auto maps = readProcFile("/proc/" + std::to_string(pid) + "/maps");
  if (!maps) {
    return fail(std::move(maps).error());
  }
  std::vector<Mapping> out;
  size_t pos = 0;
  while (pos < maps->size()) {
    size_t nl = maps->find('\n', pos);
    if (nl == std::string::npos) {
      nl = maps->size();
    }
    std::string line = maps->substr(pos, nl - pos);
    pos = nl + 1;
    unsigned long long s = 0, e = 0;
    int nameAt = 0;
    if (sscanf(line.c_str(), "%llx-%llx %*s %*s %*s %*s %n", &s, &e, &nameAt) < 2) {
      continue;
    }
    out.push_back({s, e, nameAt > 0 ? line.substr(static_cast<size_t>(nameAt)) : ""});
  }
  return out;
}

bool isSpecial(const images::VmaEntry& v) {
  return (v.status() & (kVmaVdso | kVmaVvar)) != 0;
}

bool isSpecialName(const std::string& n) {
  return n == "[vdso]" || n == "[vvar]" || n == "[vvar_vclock]";
}

bool overlaps(uint64_t s, uint64_t e, uint64_t s2, uint64_t e2) { return s < e2 && s2 < e; }

// The restorer's glibc registered an rseq area in memory that is about to go; the kernel
// would write into it on the next return to user space.
Status unregisterRseq(InjectedTask& t, InjectedThread& th) {
  __ptrace_rseq_configuration rseq{};
  long n = ::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, th.tid, reinterpret_cast<void*>(sizeof(rseq)),
                    &rseq);
  if (n > 0 && rseq.rseq_abi_pointer != 0) {
    CRPIPE_TRY_CTX(th.session->callChecked("rseq unregister", SYS_rseq,
                                           {rseq.rseq_abi_pointer, rseq.rseq_abi_size,
                                            RSEQ_FLAG_UNREGISTER, rseq.signature}),
                   t.where());
  }
  th.session->forgetRseq();
  return {};
}

}  // namespace

Status mapTrampoline(InjectedTask& t, const std::vector<std::pair<uint64_t, uint64_t>>& current) {
  // Room for the trampoline and, beside it, a parking place for the vDSO and vvar while
  // they move: outside every VMA of the dumped task and of the restorer as it is now.
  constexpr uint64_t kRoom = 4 << 20;
  auto freeIn = [&t, &current](uint64_t a) {
    for (const auto& v : t.image->mm.vmas()) {
      if (overlaps(a, a + kRoom, v.start(), v.end())) {
        return false;
      }
    }
    for (const auto& [s, e] : current) {
      if (overlaps(a, a + kRoom, s, e)) {
        return false;
      }
    }
    return true;
  };
  for (uint64_t a = 1ull << 32; a < (1ull << 46); a += 1ull << 32) {
    if (!freeIn(a)) {
      continue;
    }
    auto r = t.leader().call(SYS_mmap, {a, kTrampolineSize, PROT_READ | PROT_WRITE | PROT_EXEC,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                        ~uint64_t{0}, 0});
    if (!r) {
      return fail(std::move(r).error().context(t.where() + ": trampoline"));
    }
    if (*r < 0 && *r > -4096) {
      continue;  // taken after all (EEXIST): the next candidate
    }
    static const unsigned char kSyscall[2] = {0x0f, 0x05};
    CRPIPE_TRY_CTX(writeRemote(t.pid, a, kSyscall, sizeof(kSyscall)), t.where() + ": trampoline");
    t.trampoline = a;
    for (auto& th : t.threads) {
      th.session->setSyscallInsn(a);
    }
    return {};
  }
  return failMsg(t.where() + ": no free place for the trampoline page");
}

Status mapAddressSpace(InjectedTask& t) {
  SyscallSession& s = t.leader();
  const std::string w = t.where();
  CRPIPE_TRY(unregisterRseq(t, t.threads[0]));

  auto maps = currentMappings(t.pid);
  if (!maps) {
    return fail(std::move(maps).error());
  }
  std::vector<Mapping> curSpecial;
  for (const auto& m : *maps) {
    if (isSpecialName(m.name)) {
      curSpecial.push_back(m);
    }
  }
  std::vector<const images::VmaEntry*> dumpSpecial;
  for (const auto& v : t.image->mm.vmas()) {
    if (isSpecial(v)) {
      dumpSpecial.push_back(&v);
    }
  }
  if (curSpecial.size() != dumpSpecial.size()) {
    return failMsg(w + ": the dump has " + std::to_string(dumpSpecial.size()) +
                   " vdso/vvar mappings, this kernel gives " + std::to_string(curSpecial.size()) +
                   " (restore on the kernel that made the dump)");
  }
  for (size_t i = 0; i < curSpecial.size(); ++i) {
    if (curSpecial[i].end - curSpecial[i].start != dumpSpecial[i]->end() - dumpSpecial[i]->start()) {
      return failMsg(w + ": vdso/vvar mapping " + hexRange(dumpSpecial[i]->start(), dumpSpecial[i]->end()) +
                     " has another size on this kernel (" + curSpecial[i].name + " " +
                     hexRange(curSpecial[i].start, curSpecial[i].end) + ")");
    }
  }

  // Everything of the restorer goes but the trampoline, the vDSO/vvar and the vsyscall page
  // (above the user address space: munmap cannot touch it).
  std::vector<std::pair<uint64_t, uint64_t>> keep = {{t.trampoline, t.trampoline + kTrampolineSize}};
  for (const auto& m : curSpecial) {
    keep.emplace_back(m.start, m.end);
  }
  std::sort(keep.begin(), keep.end());
  uint64_t from = 0;
  for (const auto& [ks, ke] : keep) {
    if (ks > from) {
      CRPIPE_TRY_CTX(s.callChecked("munmap", SYS_munmap, {from, ks - from}), w);
    }
    from = ke;
  }
  CRPIPE_TRY_CTX(s.callChecked("munmap", SYS_munmap, {from, kTaskSize - from}), w);

  // vDSO and vvar to the dumped addresses: first beside the trampoline (the targets may
  // overlap where they are now), then into place. mremap of the vDSO tells the kernel where
  // it now is (signal return of 32-bit code, and /proc maps).
  uint64_t park = t.trampoline + kTrampolineSize;
  std::vector<uint64_t> parked;
  for (const auto& m : curSpecial) {
    uint64_t len = m.end - m.start;
    CRPIPE_TRY_CTX(s.callChecked("mremap", SYS_mremap,
                                 {m.start, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, park}),
                   w + ": park " + m.name);
    parked.push_back(park);
    park += len;
  }
  for (size_t i = 0; i < parked.size(); ++i) {
    uint64_t len = curSpecial[i].end - curSpecial[i].start;
    CRPIPE_TRY_CTX(s.callChecked("mremap", SYS_mremap,
                                 {parked[i], len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
                                  dumpSpecial[i]->start()}),
                   w + ": move " + curSpecial[i].name + " to " +
                       hexRange(dumpSpecial[i]->start(), dumpSpecial[i]->end()));
  }

  // Every other VMA at its address. Private mappings are made writable (and readable)
  // until their pages are in; file mappings are opened inside the task, by path, once per
  // file, and closed again once everything is mapped.
  std::map<uint64_t, int> openFiles;  // shmid (file id or shmem inode) -> fd in the task
  auto openInTask = [&](uint64_t key, const std::string& path, int flags) -> Result<int> {
    auto it = openFiles.find(key);
    if (it != openFiles.end()) {
      return it->second;
    }
    auto addr = t.putString(0, path);
    if (!addr) {
      return fail(std::move(addr).error());
    }
    auto fd = s.callChecked("open", SYS_openat,
                            {static_cast<uint64_t>(AT_FDCWD), *addr,
                             static_cast<uint64_t>(flags | O_CLOEXEC), 0});
    if (!fd) {
      return fail(std::move(fd).error().context("open " + path));
    }
    openFiles[key] = static_cast<int>(*fd);
    return static_cast<int>(*fd);
  };
  constexpr uint32_t kKeepFlags = MAP_PRIVATE | MAP_SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN |
                                  MAP_NORESERVE;
  for (const auto& v : t.image->mm.vmas()) {
    if (isSpecial(v) || (v.status() & kVmaVsyscall) != 0) {
      continue;
    }
    const std::string vw = w + ": mapping " + hexRange(v.start(), v.end());
    const uint64_t len = v.end() - v.start();
    uint32_t flags = (v.flags() & kKeepFlags) | MAP_FIXED;
    uint32_t prot = v.prot();
    uint64_t fd = ~uint64_t{0};
    uint64_t pgoff = 0;
    if ((v.status() & kVmaAnonShared) != 0) {
      auto obj = t.shmem->find(v.shmid());
      if (obj == t.shmem->end()) {
        return failMsg(vw + ": shared anonymous object " + std::to_string(v.shmid()) +
                       " was not created");
      }
      auto f = openInTask(v.shmid() | (1ull << 63), obj->second.path, O_RDWR);
      if (!f) {
        return fail(std::move(f).error().context(vw));
      }
      fd = static_cast<uint64_t>(*f);
      pgoff = v.pgoff();
      flags = (flags & ~static_cast<uint32_t>(MAP_ANONYMOUS | MAP_PRIVATE)) | MAP_SHARED;
    } else if ((v.status() & (kVmaFilePrivate | kVmaFileShared)) != 0) {
      auto path = t.filePath(static_cast<uint32_t>(v.shmid()), "mapped file");
      if (!path) {
        return fail(std::move(path).error().context(vw));
      }
      int oflags = (v.fdflags() & O_ACCMODE) == O_RDWR ? O_RDWR : O_RDONLY;
      auto f = openInTask(v.shmid(), *path, oflags);
      if (!f) {
        return fail(std::move(f).error().context(vw));
      }
      fd = static_cast<uint64_t>(*f);
      pgoff = v.pgoff();
    }
    if ((flags & MAP_PRIVATE) != 0) {
      prot |= PROT_READ | PROT_WRITE;
    }
    auto r = s.callChecked("mmap", SYS_mmap, {v.start(), len, prot, flags, fd, pgoff});
    if (!r) {
      return fail(std::move(r).error().context(vw));
    }
    if (*r != v.start()) {
      return failMsg(vw + ": mmap placed it at " + hexRange(*r, *r + len));
    }
  }
  for (const auto& [key, fd] : openFiles) {
    CRPIPE_TRY_CTX(s.callChecked("close", SYS_close, {static_cast<uint64_t>(fd)}), w);
  }
  return {};
}

Status finishAddressSpace(InjectedTask& t) {
  SyscallSession& s = t.leader();
  const std::string w = t.where();
  for (const auto& v : t.image->mm.vmas()) {
    if (isSpecial(v) || (v.status() & kVmaVsyscall) != 0) {
      continue;
    }
    const std::string vw = w + ": mapping " + hexRange(v.start(), v.end());
    const uint64_t len = v.end() - v.start();
    for (int advice = 0; advice < 64; ++advice) {
      if ((v.madv() & (1ull << advice)) == 0) {
        continue;
      }
      auto r = s.call(SYS_madvise, {v.start(), len, static_cast<uint64_t>(advice)});
      if (!r) {
        return fail(std::move(r).error().context(vw));
      }
      // KSM and THP advice fail with EINVAL on kernels built without them: the task ran
      // without the effect there too, so only the others are errors.
      bool optional = advice == MADV_MERGEABLE || advice == MADV_HUGEPAGE ||
                      advice == MADV_NOHUGEPAGE;
      if (*r < 0 && !optional) {
        return fail(Error::sys(static_cast<int>(-*r),
                               vw + ": madvise " + std::to_string(advice)));
      }
    }
    if ((v.flags() & MAP_PRIVATE) != 0 &&
        v.prot() != (v.prot() | PROT_READ | PROT_WRITE)) {
      CRPIPE_TRY_CTX(s.callChecked("mprotect", SYS_mprotect, {v.start(), len, v.prot()}), vw);
    }
  }
  return {};
}

}  // namespace crpipe::inject
