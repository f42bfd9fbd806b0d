#pragma once

#include <sys/types.h>

#include <string>

namespace crpipe {

// A dump is written into DIR/.crpipe-partial-<serializer pid>-XXXXXX and moved into DIR
// only when complete. A serializer that was killed cannot remove its own; whoever comes
// next (the coordinator that saw it die, or the next serializer) removes every partial
// directory whose serializer is no longer alive.
std::string partialDirPrefix(pid_t serializer);

// Removes the partial directories in `dirFd` whose owning process is gone. Best effort:
// what cannot be removed is left for the next sweep.
void removeStalePartialDirs(int dirFd);

}  // namespace crpipe
