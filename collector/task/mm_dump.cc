#include "collector/task/mm_dump.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "collector/task/task_proc.h"
#include "common/pagemap_scan.h"
#include "common/vma.h"
#include "common/proc.h"
#include "protos/mm.pb.h"

namespace crpipe::collector::task {

namespace {


// /proc/PID/pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
constexpr uint64_t kPmPresent = 1ull << 63;
constexpr uint64_t kPmSwap = 1ull << 62;
constexpr uint64_t kPmFile = 1ull << 61;  // file page or shared anonymous
constexpr uint64_t kPmPfnMask = (1ull << 55) - 1;

// What a mapping is, in CRIU's terms, or why crpipe refuses it.
struct VmaKind {
  uint32_t status = 0;
  uint32_t flags = 0;
  bool dumpPrivatePages = false;  // scan pagemap for pages that differ from the mapping
  bool anonShared = false;
  bool file = false;
  std::string refuse;
};

VmaKind classify(const SmapsVma& v) {
  VmaKind k;
  const std::string& p = v.path;
  if (v.hasFlag("ht")) {
    k.refuse = "a hugetlbfs mapping";
    return k;
  }
  if (v.hasFlag("um") || v.hasFlag("uw")) {
    k.refuse = "memory registered with userfaultfd";
    return k;
  }
  if (v.hasFlag("ss")) {
    k.refuse = "a shadow stack";
    return k;
  }
  if (p == "[vsyscall]") {
    k.status = kVmaVsyscall;
    k.flags = MAP_PRIVATE | MAP_ANONYMOUS;
    return k;
  }
  if (p == "[vdso]") {
    k.status = kVmaRegular | kVmaVdso;
    k.flags = MAP_PRIVATE | MAP_ANONYMOUS;
    return k;
  }
  if (p == "[vvar]" || p == "[vvar_vclock]") {
    k.status = kVmaRegular | kVmaVvar;
    k.flags = MAP_PRIVATE | MAP_ANONYMOUS;
    return k;
  }
  // Checked after the kernel's own special mappings: vvar is a VM_PFNMAP area too.
  if (v.hasFlag("io") || v.hasFlag("pf")) {
    k.refuse = "a device mapping (VM_IO/VM_PFNMAP) of " + (p.empty() ? "a driver" : p);
    return k;
  }
  if (p == "[uprobes]") {
    k.refuse = "a uprobes area";
    return k;
  }
  if (p.starts_with("/SYSV")) {
    k.refuse = "System V shared memory (" + p + ")";
    return k;
  }
  if (p.starts_with("/memfd:")) {
    k.refuse = "a memfd mapping (" + p + ")";
    return k;
  }
  if (v.shared && (p.empty() || p == "/dev/zero (deleted)" || p == "/dev/zero")) {
    // MAP_SHARED|MAP_ANONYMOUS: the kernel backs it with a shmem file named /dev/zero.
    if (v.inode == 0) {
      k.refuse = "a shared anonymous mapping without a shmem inode";
      return k;
    }
    k.status = kVmaRegular | kVmaAnonShared;
    k.flags = MAP_SHARED | MAP_ANONYMOUS;
    k.anonShared = true;
    return k;
  }
  if (p.empty() || p == "[heap]" || p.starts_with("[stack") || p.starts_with("[anon:")) {
    k.status = kVmaRegular | kVmaAnonPrivate;
    if (p == "[heap]") {
      k.status |= kVmaHeap;
    }
    if (p.starts_with("[stack")) {
      k.status |= kVmaStack;
    }
    k.flags = MAP_PRIVATE | MAP_ANONYMOUS;
    k.dumpPrivatePages = true;
    return k;
  }
  if (p[0] == '[') {
    k.refuse = "a special mapping " + p;
    return k;
  }
  k.file = true;
  if (v.shared) {
    k.status = kVmaRegular | kVmaFileShared;
    k.flags = MAP_SHARED;
  } else {
    // Pages copied on write differ from the file and are dumped; the rest come from it.
    k.status = kVmaRegular | kVmaFilePrivate;
    k.flags = MAP_PRIVATE;
    k.dumpPrivatePages = true;
  }
  return k;
}

uint64_t madvBits(const SmapsVma& v) {
  struct M {
    const char* flag;
    int madv;
  };
  static constexpr M kMap[] = {
      {"sr", MADV_SEQUENTIAL}, {"rr", MADV_RANDOM},    {"dc", MADV_DONTFORK},
      {"dd", MADV_DONTDUMP},   {"mg", MADV_MERGEABLE}, {"hg", MADV_HUGEPAGE},
      {"nh", MADV_NOHUGEPAGE}, {"wf", MADV_WIPEONFORK},
  };
  uint64_t bits = 0;
  for (const auto& m : kMap) {
    if (v.hasFlag(m.flag)) {
      bits |= 1ull << m.madv;
    }
  }
  return bits;
}

uint32_t extraMapFlags(const SmapsVma& v) {
  uint32_t f = 0;
  if (v.hasFlag("gd")) {
    f |= MAP_GROWSDOWN;
  }
  if (v.hasFlag("lo")) {
    f |= MAP_LOCKED;
  }
  if (v.hasFlag("nr")) {
    f |= MAP_NORESERVE;
  }
  return f;
}

// The pages of [start, end) of a process that differ from a fresh private mapping, as
// runs: by PAGEMAP_SCAN where the kernel has it (the kernel walks the page table and
// returns runs: no 8 bytes a page to copy and test), else from /proc/PID/pagemap entries.
class PagemapReader {
 public:
  PagemapReader(int pagemapFd, MmDumpState& st) : fd_(pagemapFd), st_(&st) {}

  // `fileBacked`: the mapping has a file (or device) behind it, whose pages are not
  // dumped; an anonymous mapping has none, and asking the kernel to tell them (a page
  // lookup per entry) would cost PAGEMAP_SCAN two thirds of its time.
  template <typename Page>
  Status runs(pid_t pid, uint64_t start, uint64_t end, bool fileBacked, Page&& page) {
    if (st_->pagemapScan != 0) {
      auto done = scan(start, end, fileBacked, page);
      if (!done) {
        return fail(std::move(done).error());
      }
      if (*done) {
        return {};
      }
      st_->pagemapScan = 0;  // not in this kernel: entries from now on
    }
    return read(pid, start, end, page);
  }

 private:
  // false when the kernel has no PAGEMAP_SCAN (tried once per dump).
  template <typename Page>
  Result<bool> scan(uint64_t start, uint64_t end, bool fileBacked, Page& page) {
    const uint64_t notWanted = (fileBacked ? kPageIsFile : 0) | kPageIsPfnZero;
    std::vector<PageRegion>& vec = st_->scanBuf;
    vec.resize(512);
    for (uint64_t at = start; at < end;) {
      PmScanArg arg{};
      arg.size = sizeof(arg);
      arg.start = at;
      arg.end = end;
      arg.vec = reinterpret_cast<uint64_t>(vec.data());
      arg.vecLen = vec.size();
      // Present or swapped, neither a file page nor the zero page (huge or not).
      arg.categoryInverted = notWanted;
      arg.categoryMask = notWanted;
      arg.categoryAnyofMask = kPageIsPresent | kPageIsSwapped;
      long n = ::ioctl(fd_, kPagemapScan, &arg);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        if (st_->pagemapScan == -1 && (errno == ENOTTY || errno == EINVAL)) {
          return false;
        }
        return fail(Error::sys("PAGEMAP_SCAN"));
      }
      // Known to work from now on: a later failure is an error, never a fallback that
      // would name the runs already named again.
      st_->pagemapScan = 1;
      for (long i = 0; i < n; ++i) {
        CRPIPE_TRY(page(vec[i].start, (vec[i].end - vec[i].start) / kPageSize));
      }
      if (arg.walkEnd <= at) {
        return fail(Error::sys(EIO, "PAGEMAP_SCAN made no progress at " + hexAddr(at)));
      }
      at = arg.walkEnd;
    }
    return true;
  }

  template <typename Page>
  Status read(pid_t pid, uint64_t start, uint64_t end, Page& page) {
    std::vector<uint64_t>& pm = st_->pagemapBuf;
    const size_t n = static_cast<size_t>((end - start) / kPageSize);
    // Kept across mappings and processes: a fresh zeroed 512 KiB for each of hundreds of
    // mappings cost more than reading their pagemap.
    pm.resize(std::max(pm.size(), n));
    const size_t bytes = n * 8;
    size_t got = 0;
    while (got < bytes) {
      ssize_t r = ::pread(fd_, reinterpret_cast<char*>(pm.data()) + got, bytes - got,
                          static_cast<off_t>((start / kPageSize) * 8 + got));
      if (r < 0) {
        if (errno == EINTR) {
          continue;
        }
        return fail(Error::sys("pid " + std::to_string(pid) + ": read pagemap"));
      }
      if (r == 0) {
        return failMsg("pid " + std::to_string(pid) + ": short pagemap read");
      }
      got += static_cast<size_t>(r);
    }
    if (!st_->zeroPfn) {
      st_->zeroPfn = findZeroPfn();  // only entries need it: PAGEMAP_SCAN tells the zero page
    }
    const uint64_t zeroPfn = *st_->zeroPfn;
    for (size_t i = 0; i < n; ++i) {
      uint64_t e = pm[i];
      bool dump = (e & (kPmPresent | kPmSwap)) != 0 && (e & kPmFile) == 0;
      if (dump && zeroPfn != 0 && (e & kPmPresent) != 0 && (e & kPmPfnMask) == zeroPfn) {
        dump = false;
      }
      if (dump) {
        CRPIPE_TRY(page(start + i * kPageSize, 1));
      }
    }
    return {};
  }

  int fd_;
  MmDumpState* st_;
};

// Pages of a private mapping whose contents differ from what mapping it afresh gives:
// anonymous pages present or swapped out (a private file mapping's copied-on-write pages
// are anonymous too), except the shared zero page. File pages (PM_FILE) come back from
// the file; pages never touched are not in the page table at all. The page table is read
// in pieces (PagemapReader), each piece's runs named before the next piece is read.
Status dumpPrivatePages(PagemapReader& reader, int memFd, pid_t pid, const SmapsVma& v,
                        PageWriter& pw) {
  // Pages per piece: 256 MiB of address space at most, and a small first piece growing
  // eightfold, so that the pages of a large mapping are on their way (named to the
  // serializer, or read) while the rest of its page table is read.
  constexpr size_t kChunk = 64 * 1024;
  constexpr size_t kFirstChunk = 256;
  const bool readable = (v.prot & PROT_READ) != 0;
  uint64_t runStart = 0, runLen = 0;
  auto emit = [&]() -> Status {
    if (runLen == 0) {
      return {};
    }
    Status s = readable ? pw.addRemote(pid, runStart, runLen)
                        : pw.addFromFd(memFd, runStart, runStart, runLen);
    runLen = 0;
    return s;
  };
  auto page = [&](uint64_t a, uint64_t n) -> Status {
    if (runLen != 0 && runStart + runLen * kPageSize == a) {
      runLen += n;
      return {};
    }
    CRPIPE_TRY(emit());
    runStart = a;
    runLen = n;
    return {};
  };
  size_t chunk = kFirstChunk;
  for (uint64_t addr = v.start; addr < v.end;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>((v.end - addr) / kPageSize, chunk));
    chunk = std::min(chunk * 8, kChunk);
    CRPIPE_TRY(reader.runs(pid, addr, addr + n * kPageSize, v.inode != 0, page));
    addr += n * kPageSize;
    if (addr < v.end) {
      // More to read: what is known so far goes now. A run still open ends here and the
      // next piece starts a new one: its entry must go before its pages (a reader of the
      // stream learns where pages belong before they come), and its length is not known
      // yet. So a run is split at the piece boundaries, as CRIU's own pagemaps may be.
      CRPIPE_TRY(emit());
      CRPIPE_TRY(pw.flush());
    }
  }
  return emit();
}

// The allocated pages of a shared anonymous object, found with SEEK_DATA/SEEK_HOLE on its
// shmem file (present and swapped pages alike), read with pread: one dump for all sharers.
Status dumpShmem(DumpContext& ctx, MmDumpState& st, pid_t pid, const SmapsVma& v) {
  const std::string path = "/proc/" + std::to_string(pid) + "/map_files/" +
                           hexRange(v.start, v.end);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return fail(Error::sys("open " + path));
  }
  struct stat sb {};
  if (::fstat(fd.get(), &sb) < 0) {
    return fail(Error::sys("fstat " + path));
  }
  if (!st.shmemDone.insert({sb.st_dev, sb.st_ino}).second) {
    return {};
  }
  auto pw = PageWriter::open(ctx.out, st.buffer,
                             "pagemap-shmem-" + std::to_string(sb.st_ino) + ".img",
                             st.nextPagesId++);
  if (!pw) {
    return fail(std::move(pw).error());
  }
  const off_t size = sb.st_size;
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) {
        break;  // no data after pos
      }
      return fail(Error::sys("SEEK_DATA " + path));
    }
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) {
      return fail(Error::sys("SEEK_HOLE " + path));
    }
    hole = std::min(hole, size);
    uint64_t first = static_cast<uint64_t>(data) / kPageSize * kPageSize;
    uint64_t end = (static_cast<uint64_t>(hole) + kPageSize - 1) / kPageSize * kPageSize;
    if (end > first) {
      CRPIPE_TRY(pw->addFromFd(fd.get(), first, first, (end - first) / kPageSize));
    }
    pos = static_cast<off_t>(end);
  }
  CRPIPE_TRY(pw->flush());
  st.pagesDumped += pw->pages();
  return {};
}

Result<std::vector<uint64_t>> readAuxv(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/auxv";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return fail(Error::sys("open " + path));
  }
  auto bytes = readAll(fd.get());
  if (!bytes) {
    return fail(std::move(bytes).error().context(path));
  }
  std::vector<uint64_t> out(bytes->size() / 8);
  std::memcpy(out.data(), bytes->data(), out.size() * 8);
  return out;
}

// pagemap-PID.img + pages-N.img: the pages of every private mapping `kinds` marks, in
// address order; shared anonymous objects (dumpShmem) when `withShmem`.
Status dumpPrivateMemory(DumpContext& ctx, MmDumpState& st, pid_t pid,
                         const std::vector<SmapsVma>& vmas, const std::vector<VmaKind>& kinds,
                         bool withShmem = true) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  const std::string where = "pid " + std::to_string(pid);
  UniqueFd pagemap(::open((dir + "pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap.valid()) {
    return fail(Error::sys("open " + dir + "pagemap"));
  }
  PagemapReader reader(pagemap.get(), st);
  // Only for memory the task itself cannot read (PROT_NONE): /proc/PID/mem reads with
  // FOLL_FORCE, page by page through a bounce buffer, so it is not the common path.
  UniqueFd mem;
  auto pw = PageWriter::open(ctx.out, st.buffer, "pagemap-" + std::to_string(pid) + ".img",
                             st.nextPagesId++);
  if (!pw) {
    return fail(std::move(pw).error());
  }
  for (size_t i = 0; i < vmas.size(); ++i) {
    const auto& v = vmas[i];
    const auto& k = kinds[i];
    if (k.anonShared && withShmem) {
      CRPIPE_TRY(pw->flush());
      CRPIPE_TRY(dumpShmem(ctx, st, pid, v));
      continue;
    }
    if (!k.dumpPrivatePages) {
      continue;
    }
    if ((v.prot & PROT_READ) == 0 && !mem.valid()) {
      mem.reset(::open((dir + "mem").c_str(), O_RDONLY | O_CLOEXEC));
      if (!mem.valid()) {
        return fail(Error::sys("open " + dir + "mem"));
      }
    }
    CRPIPE_TRY_CTX(dumpPrivatePages(reader, mem.get(), pid, v, *pw),
                   where + ": mapping " + hexRange(v.start, v.end));
  }
  CRPIPE_TRY(pw->flush());
  st.pagesDumped += pw->pages();
  return {};
}

}  // namespace

Status dumpPrivateMemoryEarly(DumpContext& ctx, MmDumpState& st, pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/maps";
  auto text = readProcFile(path);
  if (!text) {
    return fail(std::move(text).error());
  }
  auto vmas = parseSmaps(*text);
  if (!vmas) {
    return fail(std::move(vmas).error().context(path));
  }
  std::vector<VmaKind> kinds;
  std::vector<std::pair<uint64_t, uint64_t>> chosen;
  const std::string mapFiles = "/proc/" + std::to_string(pid) + "/map_files/";
  for (const auto& v : *vmas) {
    kinds.push_back(classify(v));
    // A private mapping of a device (VM_IO/VM_PFNMAP, which only smaps' VmFlags tell) is
    // refused later with its own message; its frames must not be read before that. Such a
    // process goes the late way, wholly. What the mapped file is, stat says (through the
    // mapping, wherever the node lives); one that cannot be asked goes late too.
    if (kinds.back().file && kinds.back().dumpPrivatePages) {
      struct stat st {};
      const std::string link = mapFiles + hexRange(v.start, v.end);
      if (::stat(link.c_str(), &st) != 0 || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
        ctx.log.debug("pid %d: a private mapping of %s (a device, or not to be asked); its "
                      "pages are read after smaps", pid, v.path.c_str());
        return {};
      }
    }
    if (kinds.back().dumpPrivatePages) {
      chosen.emplace_back(v.start, v.end);
    }
  }
  CRPIPE_TRY(dumpPrivateMemory(ctx, st, pid, *vmas, kinds, /*withShmem=*/false));
  st.early.emplace(pid, std::move(chosen));
  return {};
}

uint64_t findZeroPfn() {
  void* p = ::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return 0;
  }
  // A read fault of private anonymous memory maps the shared zero page.
  volatile char c = *static_cast<volatile char*>(p);
  (void)c;
  uint64_t e = 0;
  UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (fd.valid()) {
    if (::pread(fd.get(), &e, 8, static_cast<off_t>(reinterpret_cast<uint64_t>(p) / kPageSize * 8)) != 8) {
      e = 0;
    }
  }
  ::munmap(p, kPageSize);
  return (e & kPmPresent) != 0 ? (e & kPmPfnMask) : 0;
}

Result<images::MmEntry> dumpMm(DumpContext& ctx, MmDumpState& st, pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  const std::string where = "pid " + std::to_string(pid);
  auto smapsText = readProcFile(dir + "smaps");
  if (!smapsText) {
    return fail(std::move(smapsText).error());
  }
  auto vmas = parseSmaps(*smapsText);
  if (!vmas) {
    return fail(std::move(vmas).error().context(dir + "smaps"));
  }
  auto statText = readProcFile(dir + "stat");
  if (!statText) {
    return fail(std::move(statText).error());
  }
  auto bounds = parseMmBounds(*statText);
  if (!bounds) {
    return fail(std::move(bounds).error().context(dir + "stat"));
  }
  auto auxv = readAuxv(pid);
  if (!auxv) {
    return fail(std::move(auxv).error());
  }

  images::MmEntry mm;
  mm.set_mm_start_code(bounds->startCode);
  mm.set_mm_end_code(bounds->endCode);
  mm.set_mm_start_data(bounds->startData);
  mm.set_mm_end_data(bounds->endData);
  mm.set_mm_start_stack(bounds->startStack);
  mm.set_mm_start_brk(bounds->startBrk);
  mm.set_mm_arg_start(bounds->argStart);
  mm.set_mm_arg_end(bounds->argEnd);
  mm.set_mm_env_start(bounds->envStart);
  mm.set_mm_env_end(bounds->envEnd);
  auto exe = st.files.idFor(ctx, pid, dir + "exe", O_RDONLY);
  if (!exe) {
    return fail(std::move(exe).error().context(where + ": executable"));
  }
  mm.set_exe_file_id(*exe);
  for (uint64_t a : *auxv) {
    mm.add_mm_saved_auxv(a);
  }

  std::vector<VmaKind> kinds;
  for (const auto& v : *vmas) {
    VmaKind k = classify(v);
    if (!k.refuse.empty()) {
      return failMsg(where + ": mapping " + hexRange(v.start, v.end) + " is " + k.refuse +
                     "; crpipe cannot dump it yet, nothing was dumped");
    }
    auto* e = mm.add_vmas();
    e->set_start(v.start);
    e->set_end(v.end);
    e->set_pgoff((k.file || k.anonShared) ? v.pgoff : 0);
    e->set_prot(v.prot);
    e->set_flags(k.flags | extraMapFlags(v));
    e->set_status(k.status);
    e->set_fd(-1);
    e->set_madv(madvBits(v));
    e->set_shmid(0);
    if (k.anonShared) {
      e->set_shmid(v.inode);
    } else if (k.file) {
      // A shared mapping that may be made writable needs the file open for writing.
      int oflags = (v.shared && v.hasFlag("mw")) ? O_RDWR : O_RDONLY;
      auto id = st.files.idFor(ctx, pid, dir + "map_files/" + hexRange(v.start, v.end), oflags);
      if (!id) {
        return fail(std::move(id).error().context(where + ": mapping " + v.path));
      }
      e->set_shmid(*id);
      e->set_fdflags(static_cast<uint32_t>(oflags));
    }
    kinds.push_back(k);
  }
  if (auto e = st.early.find(pid); e != st.early.end()) {
    // The private pages went out right after the freeze (dumpPrivateMemoryEarly), chosen
    // from /proc/PID/maps; smaps must choose the same mappings, or the early choice missed
    // something only VmFlags tell.
    std::vector<std::pair<uint64_t, uint64_t>> want;
    for (size_t i = 0; i < vmas->size(); ++i) {
      if (kinds[i].dumpPrivatePages) {
        want.emplace_back((*vmas)[i].start, (*vmas)[i].end);
      }
    }
    if (want != e->second) {
      return failMsg(where + ": its private mappings read from maps (" +
                     std::to_string(e->second.size()) + ") and from smaps (" +
                     std::to_string(want.size()) +
                     ") differ; the address space changed while frozen");
    }
    for (size_t i = 0; i < vmas->size(); ++i) {
      if (kinds[i].anonShared) {
        CRPIPE_TRY(dumpShmem(ctx, st, pid, (*vmas)[i]));
      }
    }
    return mm;
  }
  CRPIPE_TRY(dumpPrivateMemory(ctx, st, pid, *vmas, kinds));
  return mm;
}

}  // namespace crpipe::collector::task
