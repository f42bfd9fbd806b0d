#pragma once

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "serializer/commands.h"

namespace crpipe {

// An opened stream endpoint: either an fd we own, or one we only borrow (stdin/stdout,
// an inherited --in-fd/--out-fd, which the stage's caller owns).
struct OpenEndpoint {
  UniqueFd owned;
  int fd = -1;
  std::string name;  // for messages: the path, "stdin", "fd 3"
};

Result<OpenEndpoint> openInput(const StreamEndpoint& ep);
Result<OpenEndpoint> openOutput(const StreamEndpoint& ep);

}  // namespace crpipe
