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

  bool isExternal(const std::string& key) const { return externals.count(key) != 0; }
};

}  // namespace crpipe::collector
