#include "collector/kinds/unix_name.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "common/proc.h"
#include "common/unique_fd.h"

#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (SIOCPROTOPRIVATE + 0)
#endif

namespace crpipe::collector {

namespace {

constexpr std::string_view kDeleted = " (deleted)";

}  // namespace

bool looksAutobound(const std::string& name) {
  if (name.size() != 6 || name[0] != '\0') {
    return false;
  }
  for (size_t i = 1; i < name.size(); ++i) {
    char c = name[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

Result<UnixBoundFile> resolveBoundFile(int sockFd, const std::string& name, pid_t pid) {
  UnixBoundFile r;
  UniqueFd file(::ioctl(sockFd, SIOCUNIXFILE));
  if (!file.valid()) {
    return fail(Error::sys("ioctl(SIOCUNIXFILE)"));
  }
  std::string self = "/proc/self/fd/" + std::to_string(file.get());

  auto info = readProcFile("/proc/self/fdinfo/" + std::to_string(file.get()));
  if (!info) {
    return fail(std::move(info).error());
  }
  auto parsed = parseFdInfo(*info);
  if (!parsed) {
    return fail(std::move(parsed).error());
  }
  r.mntId = parsed->mntId;

  struct stat st {};
  if (::fstat(file.get(), &st) != 0) {
    return fail(Error::sys("fstat of the socket file"));
  }
  r.perms.set_mode(st.st_mode);
  r.perms.set_uid(st.st_uid);
  r.perms.set_gid(st.st_gid);

  auto link = readLink(self);
  if (!link) {
    return fail(std::move(link).error());
  }
  std::string path = *link;
  // The link of an unlinked file ends in " (deleted)"; st_nlink says so for sure (a file
  // really named "x (deleted)" keeps its link count).
  if (st.st_nlink == 0 && path.size() >= kDeleted.size() &&
      path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
    path.resize(path.size() - kDeleted.size());
  }
  r.deleted = st.st_nlink == 0;

  if (!name.empty() && name[0] == '/') {
    if (path != name) {
      r.currentPath = path;  // renamed (or moved) after bind
    }
    return r;
  }
  // A relative name was resolved against the binder's cwd at bind time. The file's path
  // now ends with the name if it has not moved: what comes before is the directory (the
  // way CRIU derives name_dir). Otherwise the task's cwd is the best remaining guess.
  std::string tail = "/" + name;
  if (path.size() > tail.size() &&
      path.compare(path.size() - tail.size(), tail.size(), tail) == 0) {
    r.nameDir = path.substr(0, path.size() - tail.size());
    return r;
  }
  if (path == tail) {
    r.nameDir = "/";
    return r;
  }
  r.currentPath = path;
  if (pid != 0) {
    auto cwd = readLink("/proc/" + std::to_string(pid) + "/cwd");
    if (cwd) {
      r.nameDir = *cwd;
    }
  }
  return r;
}

}  // namespace crpipe::collector
