#include "common/partial_dirs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <vector>

#include "common/unique_fd.h"

namespace crpipe {

namespace {

constexpr std::string_view kPrefix = ".crpipe-partial-";

std::vector<std::string> entries(int dirFd) {
  std::vector<std::string> out;
  UniqueFd dup(::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dup.valid()) {
    return out;
  }
  DIR* d = ::fdopendir(dup.get());
  if (d == nullptr) {
    return out;
  }
  (void)dup.release();  // owned by the DIR stream from here on
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") {
      out.push_back(std::move(n));
    }
  }
  ::closedir(d);
  return out;
}

}  // namespace

std::string partialDirPrefix(pid_t serializer) {
  return std::string(kPrefix) + std::to_string(serializer) + "-";
}

void removeStalePartialDirs(int dirFd) {
  for (const auto& name : entries(dirFd)) {
    if (!std::string_view(name).starts_with(kPrefix)) {
      continue;
    }
    std::string_view rest = std::string_view(name).substr(kPrefix.size());
    pid_t owner = 0;
    auto r = std::from_chars(rest.data(), rest.data() + rest.size(), owner);
    if (r.ec != std::errc() || r.ptr == rest.data() || *r.ptr != '-') {
      continue;  // not a name crpipe made
    }
    if (::kill(owner, 0) == 0 || errno != ESRCH) {
      continue;  // its serializer still runs (or may: EPERM)
    }
    UniqueFd part(::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!part.valid()) {
      continue;
    }
    for (const auto& f : entries(part.get())) {
      ::unlinkat(part.get(), f.c_str(), 0);
    }
    ::unlinkat(dirFd, name.c_str(), AT_REMOVEDIR);
  }
}

}  // namespace crpipe
