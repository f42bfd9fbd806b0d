#include "collector/kinds/unix_embryo_probe.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/unique_fd.h"

namespace crpipe::collector {
namespace {

constexpr size_t kPage = 4096;

// One anonymous page, unmapped on scope exit.
class ProbePage {
 public:
  ProbePage()
      : p_(mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) {}
  ~ProbePage() {
    if (p_ != MAP_FAILED) {
      munmap(p_, kPage);
    }
  }
  ProbePage(const ProbePage&) = delete;
  ProbePage& operator=(const ProbePage&) = delete;
  bool ok() const { return p_ != MAP_FAILED; }
  unsigned char* bytes() const { return static_cast<unsigned char*>(p_); }

 private:
  void* p_;
};

std::string sysText(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// The end of the highest "System RAM" range: bounds the calibration scan.
Result<uint64_t> maxPhysicalAddress() {
  std::ifstream in("/proc/iomem");
  if (!in) {
    return failSys("/proc/iomem");
  }
  uint64_t top = 0;
  for (std::string line; std::getline(in, line);) {
    unsigned long long start = 0, end = 0;
    // top-level ranges only (nested ones are indented)
    if (line.find(" : System RAM") != std::string::npos && !line.empty() && line[0] != ' ' &&
        std::sscanf(line.c_str(), "%llx-%llx", &start, &end) == 2 && end + 1 > top) {
      top = end + 1;
    }
  }
  if (top <= 1) {
    return failMsg("/proc/iomem shows no RAM addresses (they need CAP_SYS_ADMIN)");
  }
  return top;
}

Result<uint64_t> frameNumber(const void* addr) {
  UniqueFd fd(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return failSys("/proc/self/pagemap");
  }
  uint64_t entry = 0;
  off_t at = static_cast<off_t>(reinterpret_cast<uintptr_t>(addr) / kPage * sizeof entry);
  if (pread(fd.get(), &entry, sizeof entry, at) != static_cast<ssize_t>(sizeof entry)) {
    return failSys("pread /proc/self/pagemap");
  }
  uint64_t pfn = entry & ((1ULL << 55) - 1);  // bits 0-54; bit 63: present
  if ((entry >> 63) == 0 || pfn == 0) {
    return failMsg("/proc/self/pagemap hides page frame numbers (they need CAP_SYS_ADMIN)");
  }
  return pfn;
}

}  // namespace

std::string calibrateEmbryoIterator(
    const std::function<Result<std::string>(const crp_emb_config&)>& pass) {
#if !defined(__x86_64__)
  (void)pass;
  return "paged skb data can only be located on x86-64";
#else
  if (sysconf(_SC_PAGESIZE) != static_cast<long>(kPage)) {
    return "the page size is not 4 KiB";
  }
  ProbePage page;
  if (!page.ok()) {
    return sysText("mmap");
  }
  // The cookie is drawn straight into the page; the config gets its complement, so no
  // other copy of it exists for the scan to stumble on.
  if (getrandom(page.bytes(), 64, 0) != 64) {
    return sysText("getrandom");
  }
  int p[2], s[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return sysText("pipe2");
  }
  UniqueFd pipeRead(p[0]), pipeWrite(p[1]);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) != 0) {
    return sysText("socketpair");
  }
  UniqueFd sender(s[0]), receiver(s[1]);
  iovec iov{page.bytes(), kPage};
  if (vmsplice(pipeWrite.get(), &iov, 1, 0) != static_cast<ssize_t>(kPage)) {
    return sysText("vmsplice");
  }
  if (splice(pipeRead.get(), nullptr, sender.get(), nullptr, kPage, 0) !=
      static_cast<ssize_t>(kPage)) {
    return sysText("splice into a unix socket");
  }
  // The skb now holds a reference on the page, so it cannot migrate: the pfn stays valid.
  auto pfn = frameNumber(page.bytes());
  if (!pfn) {
    return pfn.error().str();
  }
  auto maxPhys = maxPhysicalAddress();
  if (!maxPhys) {
    return maxPhys.error().str();
  }
  struct stat st {};
  if (fstat(receiver.get(), &st) != 0) {
    return sysText("fstat");
  }
  crp_emb_config cfg{};
  cfg.mode = CRP_MODE_CALIB;
  cfg.probe_ino = static_cast<uint32_t>(st.st_ino);
  cfg.probe_pfn = *pfn;
  cfg.max_phys = *maxPhys;
  for (size_t i = 0; i < sizeof cfg.cookie; ++i) {
    cfg.cookie[i] = static_cast<uint8_t>(~page.bytes()[i]);
  }
  auto out = pass(cfg);
  if (!out) {
    return out.error().str();
  }
  for (size_t pos = 0; pos + sizeof(crp_emb_rec) <= out->size(); pos += sizeof(crp_emb_rec)) {
    crp_emb_rec r;
    std::memcpy(&r, out->data() + pos, sizeof r);
    if (r.type != CRP_REC_CALIB) {
      continue;
    }
    switch (r.arg[0]) {
      case CRP_CALIB_OK:
        return "";
      case CRP_CALIB_NO_FRAG:
        return "the probe socket's data was not in a page fragment";
      default:
        return "the probe page was not found in the kernel's direct map";
    }
  }
  return "the iterator did not visit the probe socket";
#endif
}

}  // namespace crpipe::collector
