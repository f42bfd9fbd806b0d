#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>
#include <string>

namespace crpipe::collector {

// What the user asked of a dump. Built by main() from the command line and passed down.
struct DumpOptions {
  pid_t root = 0;
  // --ext-unix-sk with no value: a connected dgram socket whose peer is outside the tree
  // is recorded as external (the peer is expected to exist at restore).
  bool extUnixSk = false;
  // --ext-unix-sk INO: this connected socket may have its peer outside the tree.
  std::set<uint32_t> extUnixSkInodes;
  // --external RES: "unix[INO]", "pipe[INO]", "file[MNT_ID:INODE]" (hex, as in CRIU).
  std::set<std::string> externals;
  // --bpf: read fds and unix sockets through the BPF fast path (collector/fast/) where it
  // can answer; --no-bpf (the default for now: the fast path's fixed cost of loading and
  // verifying its programs, ~100 ms, outweighs what it saves on most dumps) reads everything
  // with syscalls. Both give the same images.
  bool useBpf = false;
  // --no-fd-table-bpf: list large fd tables through /proc too (collector/fdtable/; by
  // default a task whose table has room for 1,024 fds or more is read by a BPF iterator).
  bool fdTableBpf = true;
  // --no-pagemap-scan: read /proc/PID/pagemap entry by entry instead of asking the kernel
  // for the runs of pages to dump (PAGEMAP_SCAN, Linux 6.7+). Both give the same images.
  bool pagemapScan = true;
  // --page-refs: pages of private mappings go on the stream as references (ImagePageRefs)
  // that the serializer beside this collector reads itself, while the tree stays frozen.
  // Only crpipe run dump -D sets it; a stream file always carries the pages.
  bool pageRefs = false;

  bool isExternal(const std::string& key) const { return externals.count(key) != 0; }
};

}  // namespace crpipe::collector
