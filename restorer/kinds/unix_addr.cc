#include "restorer/kinds/unix_addr.h"

#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <functional>

#include "common/unique_fd.h"

namespace crpipe::restorer {

Result<UnixAddr> unixAddr(const std::string& raw) {
  UnixAddr a;
  a.sa.sun_family = AF_UNIX;
  if (raw.empty()) {
    return failMsg("an empty unix socket name");
  }
  std::string bytes = raw;
  if (raw[0] != '\0') {
    // The kernel stores a path with its terminating NUL; bind() wants the path.
    bytes = std::string(raw.c_str());
    a.path = true;
    a.fsPath = bytes;
  }
  if (bytes.size() > sizeof(a.sa.sun_path)) {
    return failMsg("unix socket name of " + std::to_string(bytes.size()) + " bytes is too long");
  }
  std::memcpy(a.sa.sun_path, bytes.data(), bytes.size());
  a.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + bytes.size());
  return a;
}


Status inDirectory(const std::string& dir, const std::function<Status()>& fn) {
  if (dir.empty()) {
    return fn();
  }
  UniqueFd here(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!here.valid()) {
    return failSys("open the current directory");
  }
  if (::chdir(dir.c_str()) < 0) {
    return failSys("chdir " + dir);
  }
  auto st = fn();
  if (::fchdir(here.get()) < 0) {
    return failSys("fchdir back");
  }
  return st;
}

namespace {

// mkdir -p of the directory that holds `path`; the directories made go to `created`
// (outermost first) when it is given.
Status makeParents(const std::string& path, std::vector<std::string>* created) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) {
    return {};
  }
  const std::string dir = path.substr(0, slash);
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    return {};
  }
  CRPIPE_TRY(makeParents(dir, created));
  if (::mkdir(dir.c_str(), 0755) < 0) {
    if (errno != EEXIST) {
      return failSys("mkdir " + dir);
    }
  } else if (created != nullptr) {
    created->push_back(dir);
  }
  return {};
}

Status bindAt(int fd, const UnixAddr& a, std::vector<std::string>* created = nullptr) {
  if (a.path) {
    CRPIPE_TRY(makeParents(a.fsPath, created));
    // The dumped task's socket file outlives it; a socket file (never anything else) at
    // the name is removed, as CRIU does.
    struct stat st {};
    if (::lstat(a.fsPath.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      if (::unlink(a.fsPath.c_str()) < 0) {
        return failSys("unlink the stale socket file " + a.fsPath);
      }
    }
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a.sa), a.len) < 0) {
    return failSys("bind");
  }
  return {};
}

}  // namespace

Status bindRaw(int fd, const std::string& raw, const std::string& dir) {
  auto a = unixAddr(raw);
  if (!a) {
    return fail(std::move(a).error());
  }
  return inDirectory(dir, [&]() { return bindAt(fd, *a); });
}

void unlinkName(const std::string& raw, const std::string& dir) {
  auto a = unixAddr(raw);
  if (!a || !a->path) {
    return;
  }
  (void)inDirectory(dir, [&]() -> Status {
    ::unlink(a->fsPath.c_str());
    return {};
  });
}

Status bindName(int fd, const images::UnixSkEntry& e, std::vector<std::string>* created) {
  auto a = unixAddr(e.name());
  if (!a) {
    return fail(std::move(a).error());
  }
  return inDirectory(e.name_dir(), [&]() -> Status {
    CRPIPE_TRY_CTX(bindAt(fd, *a, created), "bind to '" + printableUnixName(e.name()) + "'");
    if (a->path && e.has_file_perms()) {
      const auto& p = e.file_perms();
      if (::chmod(a->fsPath.c_str(), p.mode() & 07777) < 0) {
        return failSys("chmod " + a->fsPath);
      }
      if (::lchown(a->fsPath.c_str(), p.uid(), p.gid()) < 0) {
        return failSys("chown " + a->fsPath);
      }
    }
    return {};
  });
}

Status connectName(int fd, const std::string& raw, const std::string& dir) {
  auto a = unixAddr(raw);
  if (!a) {
    return fail(std::move(a).error());
  }
  return inDirectory(dir, [&]() -> Status {
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a->sa), a->len) < 0) {
      return failSys("connect to '" + printableUnixName(raw) + "'");
    }
    return {};
  });
}

}  // namespace crpipe::restorer
