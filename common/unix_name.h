#pragma once

#include <string>

namespace crpipe {

// A unix socket name as a person reads it: "" for none; an abstract name as '@' and its
// bytes, a NUL shown as \0; a path name up to its first NUL; other unprintable bytes and
// backslashes as \xNN.
std::string printableUnixName(const std::string& raw);

}  // namespace crpipe
