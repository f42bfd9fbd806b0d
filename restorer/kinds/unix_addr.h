#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unix_name.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::restorer {

// A unix socket name as the images record it (a path ends with the NUL the kernel keeps;
// an abstract name starts with NUL and may hold more), as a sockaddr for bind/connect.
struct UnixAddr {
  sockaddr_un sa{};
  socklen_t len = 0;
  bool path = false;      // a file system name
  std::string fsPath;     // the path without the NUL (relative to nameDir if that is set)
};

Result<UnixAddr> unixAddr(const std::string& raw);


// Runs fn() with the current directory at dir (a relative socket name is resolved against
// the binder's directory), then goes back. An empty dir runs fn() where we are.
Status inDirectory(const std::string& dir, const std::function<Status()>& fn);

// Binds fd to the entry's name exactly: the parent directory is created if it is missing,
// a stale socket file left at the path by the dumped task is removed first, and the new
// file gets the recorded mode and owner.
// Directories it had to make for the name go to `created` (outermost first) if given.
Status bindName(int fd, const images::UnixSkEntry& e, std::vector<std::string>* created = nullptr);

// Binds fd to a raw name with no entry (the sender of a queued datagram): the stale file
// rule as above; the caller unlinks the file (unlinkName) once done.
Status bindRaw(int fd, const std::string& raw, const std::string& dir);
void unlinkName(const std::string& raw, const std::string& dir);

// connect() to a raw name, relative names from dir.
Status connectName(int fd, const std::string& raw, const std::string& dir);

}  // namespace crpipe::restorer
