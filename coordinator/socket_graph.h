#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unix_name.h"

namespace crpipe {

// The unix sockets of an image directory joined with who holds them, for
// `crpipe show --sockets`.
struct SocketHolder {
  uint32_t pid;
  uint32_t fd;
};

struct SocketCred {
  uint32_t pid;
  uint32_t uid;
  uint32_t gid;
};

struct SocketNode {
  uint32_t id = 0;  // file id (files.img)
  uint32_t ino = 0;
  uint32_t type = 0;
  uint32_t state = 0;
  uint32_t peer = 0;  // peer inode, 0 if none
  uint32_t uflags = 0;
  std::string name;     // raw bytes of the name (abstract names start with NUL)
  std::string nameDir;  // name_dir for relative names
  bool deleted = false;
  std::string origin;  // crpipe's: "fd", "scm", "embryo"
  std::string extPeerName;
  std::vector<uint32_t> icons;
  // A not-yet-accepted connection: who connected it (the SO_PEERCRED it will report).
  std::optional<SocketCred> connectedBy;
  std::vector<SocketHolder> holders;
  uint64_t queuedMessages = 0;
  uint64_t queuedBytes = 0;
};

Result<std::vector<SocketNode>> loadSocketGraph(const std::string& dir);
std::string renderSocketGraph(const std::vector<SocketNode>& nodes);

// "stream", "dgram", "seqpacket" or the number.
std::string socketTypeName(uint32_t type);
// TCP state names the kernel reuses for unix sockets: "listen", "established", ...
std::string socketStateName(uint32_t state);

}  // namespace crpipe
