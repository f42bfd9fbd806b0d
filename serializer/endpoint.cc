#include "serializer/endpoint.h"

#include <fcntl.h>
#include <unistd.h>

namespace crpipe {

Result<OpenEndpoint> openInput(const StreamEndpoint& ep) {
  OpenEndpoint e;
  if (ep.fd >= 0) {
    e.fd = ep.fd;
    e.name = "stream on fd " + std::to_string(ep.fd);
  } else if (ep.path == "-") {
    e.fd = STDIN_FILENO;
    e.name = "stream on stdin";
  } else {
    e.owned = UniqueFd(::open(ep.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!e.owned.valid()) {
      return failSys("open stream " + ep.path);
    }
    e.fd = e.owned.get();
    e.name = ep.path;
  }
  return e;
}

Result<OpenEndpoint> openOutput(const StreamEndpoint& ep) {
  OpenEndpoint e;
  if (ep.fd >= 0) {
    e.fd = ep.fd;
    e.name = "stream on fd " + std::to_string(ep.fd);
  } else if (ep.path == "-") {
    e.fd = STDOUT_FILENO;
    e.name = "stream on stdout";
  } else {
    e.owned =
        UniqueFd(::open(ep.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!e.owned.valid()) {
      return failSys("create stream " + ep.path);
    }
    e.fd = e.owned.get();
    e.name = ep.path;
  }
  return e;
}

}  // namespace crpipe
