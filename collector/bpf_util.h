#pragma once

#include <bpf/libbpf.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "common/result.h"

namespace crpipe::collector {

// Owners of libbpf handles, for the collector's BPF iterators (fast/, fdtable/, the embryo
// reader in kinds/).
struct BpfObjectCloser {
  void operator()(bpf_object* o) const { bpf_object__close(o); }
};
struct BpfLinkDestroyer {
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};
using BpfObjectPtr = std::unique_ptr<bpf_object, BpfObjectCloser>;
using BpfLinkPtr = std::unique_ptr<bpf_link, BpfLinkDestroyer>;

// An iter/task* program (its fd: bpf_program__fd, or a light skeleton's) attached to one
// process (the pid filter, Linux 6.1+): the link's fd, or a negative value with errno set
// where the kernel refuses.
int attachTaskIter(int progFd, pid_t pid);

// Reads an iterator to its end, appending to `out` (never zero-filling: a read returns at
// most one 32 KiB seq buffer, and the output can be tens of MiB).
Status readIter(int linkFd, std::string& out);

}  // namespace crpipe::collector
