#include "collector/bpf_util.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>

#include "common/unique_fd.h"

namespace crpipe::collector {

int attachTaskIter(int progFd, pid_t pid) {
  bpf_iter_link_info info{};
  info.task.pid = static_cast<__u32>(pid);
  DECLARE_LIBBPF_OPTS(bpf_link_create_opts, opts);
  opts.iter_info = &info;
  opts.iter_info_len = sizeof(info);
  return bpf_link_create(progFd, 0, BPF_TRACE_ITER, &opts);
}

Status readIter(int linkFd, std::string& out) {
  UniqueFd fd(bpf_iter_create(linkFd));
  if (!fd.valid()) {
    return failSys("bpf_iter_create");
  }
  constexpr size_t kStep = 64 * 1024;
  for (;;) {
    ssize_t n = 0;
    int err = 0;
    if (out.capacity() - out.size() < kStep) {
      out.reserve(2 * out.capacity() + 4 * kStep);
    }
    out.resize_and_overwrite(out.size() + kStep, [&](char* p, size_t len) {
      size_t have = len - kStep;
      n = ::read(fd.get(), p + have, kStep);
      err = errno;
      return have + (n > 0 ? static_cast<size_t>(n) : 0);
    });
    if (n < 0 && err == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail(Error::sys(err, "read of a BPF iterator"));
    }
    if (n == 0) {
      return {};
    }
  }
}

}  // namespace crpipe::collector
