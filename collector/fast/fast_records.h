#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "collector/fast/fast_bpf_abi.h"
#include "common/result.h"

namespace crpipe::collector {

// One fd as the task_file iterator saw it.
using FastFd = crp_fast_fd;

// One skb of a unix socket's receive queue; `data` points into the iterator output the
// records were parsed from, which must outlive them.
struct FastSkb {
  uint32_t flags = 0;  // CRP_SKB_*
  uint32_t pid = 0, uid = 0, gid = 0;
  std::string_view addr;  // the sender's sun_path bytes (CRP_SKB_ADDR)
  std::string_view data;
};

// One unix socket as the unix iterator saw it.
struct FastUnix {
  crp_fast_usk rec{};
  // The receive queue, complete, when rec.flags has CRP_USK_QUEUE and the END record said
  // it was read whole; otherwise the syscall path must peek it.
  bool queueRead = false;
  std::vector<FastSkb> skbs;
};

// Parses the output of the fast iterators (fast_bpf_abi.h). FD records are appended to
// `fds`, USK records (with their SKB and END records) go to `sockets` by inode. Views into
// `bytes` are kept: the caller keeps the buffer. A malformed stream is an error naming the
// offset; a socket whose queue was not read whole just has queueRead false.
Status parseFastRecords(std::string_view bytes, std::vector<FastFd>& fds,
                        std::unordered_map<uint32_t, FastUnix>& sockets);

}  // namespace crpipe::collector
