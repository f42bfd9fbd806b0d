#include "collector/fdtable/fd_table.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <string>

#include "collector/fdtable/fd_table_abi.h"
#include "common/unique_fd.h"

namespace crpipe::collector {

extern const unsigned char kFdTableBpfObject[];  // generated from fd_table.bpf.o at build time
extern const std::size_t kFdTableBpfObjectSize;

namespace {

int silent(libbpf_print_level, const char*, va_list) { return 0; }

// libbpf prints through one process-wide callback: quiet while this object loads (a
// failure is reported by its error code).
class LibbpfSilence {
 public:
  LibbpfSilence() : old_(libbpf_set_print(silent)) {}
  ~LibbpfSilence() { libbpf_set_print(old_); }
  LibbpfSilence(const LibbpfSilence&) = delete;
  LibbpfSilence& operator=(const LibbpfSilence&) = delete;

 private:
  libbpf_print_fn_t old_;
};

struct ObjectCloser {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};

}  // namespace

struct FdTableReader::Impl {
  std::unique_ptr<bpf_object, ObjectCloser> obj;
  bpf_program* prog = nullptr;
};

FdTableReader::FdTableReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<::bpf_link, void (*)(::bpf_link*)> FdTableReader::attach(pid_t pid) const {
  DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, opts);
  bpf_iter_link_info info{};
  info.task.pid = static_cast<__u32>(pid);
  opts.link_info = &info;
  opts.link_info_len = sizeof(info);
  LibbpfSilence quiet;  // a refused attach is reported by the caller
  return {bpf_program__attach_iter(impl_->prog, &opts),
          [](::bpf_link* l) { bpf_link__destroy(l); }};
}
FdTableReader::~FdTableReader() = default;

Result<std::unique_ptr<FdTableReader>> FdTableReader::load() {
  if (::access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
    return failSys("the kernel has no BTF (/sys/kernel/btf/vmlinux)");
  }
  LibbpfSilence quiet;
  auto impl = std::make_unique<Impl>();
  impl->obj.reset(bpf_object__open_mem(kFdTableBpfObject, kFdTableBpfObjectSize, nullptr));
  if (!impl->obj) {
    return failSys("cannot open the embedded fd-table BPF object");
  }
  impl->prog = bpf_object__find_program_by_name(impl->obj.get(), "fd_table");
  if (impl->prog == nullptr) {
    return failMsg("the embedded fd-table BPF object has no fd_table program");
  }
  if (int err = bpf_object__load(impl->obj.get()); err != 0) {
    return fail(Error::sys(-err, (err == -EPERM || err == -EACCES)
                                     ? "loading a BPF iterator needs CAP_BPF and CAP_PERFMON"
                                     : "the kernel refused the fd-table iterator (Linux >= "
                                       "6.1 with BTF)"));
  }
  // The pid filter of a task iterator came in Linux 6.1; before, every attach fails (E2BIG).
  // Tried once here on the collector itself, so that such a kernel uses /proc from the
  // start instead of failing for every large table.
  auto reader = std::unique_ptr<FdTableReader>(new FdTableReader(std::move(impl)));
  if (!reader->attach(::getpid())) {
    return failSys("the kernel has no pid filter for task iterators (Linux >= 6.1)");
  }
  return reader;
}

Result<std::vector<FdTableReader::Fd>> FdTableReader::read(pid_t pid, int pidfd) const {
  auto link = attach(pid);
  if (!link) {
    return failSys("cannot attach the fd-table iterator to pid " + std::to_string(pid));
  }
  UniqueFd it(bpf_iter_create(bpf_link__fd(link.get())));
  if (!it.valid()) {
    return failSys("bpf_iter_create (fd table of pid " + std::to_string(pid) + ")");
  }
  std::vector<Fd> out;
  // Records never straddle a read: the seq file hands out whole writes.
  std::vector<char> buf(64 * 1024);
  size_t have = 0;
  for (;;) {
    ssize_t n = ::read(it.get(), buf.data() + have, buf.size() - have);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return failSys("read of the fd-table iterator of pid " + std::to_string(pid));
    }
    have += static_cast<size_t>(n);
    size_t used = 0;
    while (have - used >= sizeof(crp_fdt_rec)) {
      crp_fdt_rec r;
      std::memcpy(&r, buf.data() + used, sizeof(r));
      used += sizeof(r);
      Fd f;
      f.fd = static_cast<int>(r.fd);
      // What fdinfo prints: f_flags with O_CLOEXEC from the fd table.
      f.info.flags = r.flags | (r.cloexec != 0 ? O_CLOEXEC : 0);
      f.info.pos = r.pos;
      f.info.mntId = r.mnt_id;
      f.info.ino = r.ino;
      f.mode = r.mode;
      // The kernel's dev_t is MAJOR << 20 | MINOR; stat(2) encodes it for user space.
      f.dev = makedev(r.dev >> 20, r.dev & 0xfffff);
      out.push_back(f);
    }
    std::memmove(buf.data(), buf.data() + used, have - used);
    have -= used;
    if (n == 0) {
      break;
    }
  }
  if (have != 0) {
    return failMsg("the fd-table iterator of pid " + std::to_string(pid) + " ended mid-record");
  }
  // An iterator over a pid with no task walks nothing: tell that from an empty table (by
  // the pidfd, which no reused pid can answer for).
  if (::syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) != 0 && errno == ESRCH) {
    return failMsg("fd table of pid " + std::to_string(pid) + ": the process is gone");
  }
  return out;
}

}  // namespace crpipe::collector
