#pragma once

#include <string>

#include "common/result.h"

namespace crpipe::testing {

// Writes a small hand-made image directory into dirFd: an inventory, a two-process tree,
// three open files (a unix socket with an abstract name holding NULs, a pipe, a regular
// file), the two tasks' fdinfo, buffered pipe data and two queued socket messages.
//   pid 100: fd 0 -> /dev/null (id 1), fd 3 -> unix socket ino 4711 (id 2), fd 4 -> pipe (id 3)
//   pid 101: fd 3 -> unix socket ino 4712 (id 4), peer of 4711
Status writeSampleImages(int dirFd);

// Reads a whole file of a directory.
std::string slurp(int dirFd, const std::string& name);

}  // namespace crpipe::testing
