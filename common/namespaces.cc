#include "common/namespaces.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>

namespace crpipe {

Result<std::set<int>> mountIdsIn(const std::string& mountinfoPath) {
  std::ifstream in(mountinfoPath);
  if (!in) {
    return failSys("open " + mountinfoPath);
  }
  std::set<int> ids;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    int id = -1;
    if (ls >> id) {
      ids.insert(id);
    }
  }
  return ids;
}

Result<uint64_t> namespaceInode(const std::string& nsPath) {
  struct stat st {};
  if (::stat(nsPath.c_str(), &st) != 0) {
    return failSys("stat " + nsPath);
  }
  return static_cast<uint64_t>(st.st_ino);
}

namespace {

// mountinfo writes space, tab, newline and backslash in a path as \ooo (octal).
std::string unescapeMountPath(const std::string& p) {
  std::string out;
  for (size_t i = 0; i < p.size(); ++i) {
    const bool octal = p[i] == '\\' && i + 3 < p.size() &&
                       p.find_first_not_of("01234567", i + 1) >= i + 4;
    if (octal) {
      out += static_cast<char>(std::stoi(p.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += p[i];
    }
  }
  return out;
}

}  // namespace

UniqueFd openNamespaceByInode(const char* kind, uint64_t ino) {
  const std::string k = kind;
  auto tryPath = [&](const std::string& path) -> UniqueFd {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || st.st_ino != ino) {
      return UniqueFd();
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.valid() && ::fstat(fd.get(), &st) == 0 && st.st_ino == ino) {
      return fd;
    }
    return UniqueFd();
  };
  // Namespaces kept by a bind mount (`ip netns add`, `unshare --mount=FILE`): nsfs mounts
  // whose root is "KIND:[INO]".
  {
    std::ifstream in("/proc/self/mountinfo");
    const std::string root = k + ":[" + std::to_string(ino) + "]";
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string id, parent, dev, mroot, point;
      if (!(ls >> id >> parent >> dev >> mroot >> point) || mroot != root ||
          line.find(" - nsfs ") == std::string::npos) {
        continue;
      }
      UniqueFd found = tryPath(unescapeMountPath(point));
      if (found.valid()) {
        return found;
      }
    }
  }
  // Then any process that lives in it.
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir("/proc"), ::closedir);
  if (!d) {
    return UniqueFd();
  }
  while (dirent* de = ::readdir(d.get())) {
    const std::string n = de->d_name;
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    UniqueFd found = tryPath("/proc/" + n + "/ns/" + k);
    if (found.valid()) {
      return found;
    }
  }
  return UniqueFd();
}

}  // namespace crpipe
