#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

#include "common/result.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::collector {

// What the socket file of a unix socket bound to a path says about it.
struct UnixBoundFile {
  int mntId = -1;
  images::FilePermsEntry perms;
  bool deleted = false;                     // the file was unlinked after bind
  std::optional<std::string> nameDir;       // for a relative name: the directory it is in
  std::optional<std::string> currentPath;   // where the file is now, if not at its name
};

// Opens the socket file with SIOCUNIXFILE (an O_PATH fd of the file the socket is bound
// to) and reads its mount id, mode and owner, and where it is now. `name` is the bind-time
// name from sock_diag; `pid` is a task holding the socket (0 if none), whose cwd is the
// best guess for the directory of a relative name whose file has since moved.
Result<UnixBoundFile> resolveBoundFile(int sockFd, const std::string& name, pid_t pid);

// Whether `name` looks like a name the kernel chose on autobind: '\0' and five lowercase
// hex digits. A user may bind the same shape on purpose; the two cannot be told apart.
bool looksAutobound(const std::string& name);

}  // namespace crpipe::collector
