#include "serializer/partial_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/image_format.h"
#include "common/partial_dirs.h"

namespace crpipe {

namespace {

Result<std::vector<std::string>> listDir(int fd, const std::string& what) {
  UniqueFd dup(::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dup.valid()) {
    return failSys("open " + what);
  }
  DIR* d = ::fdopendir(dup.get());
  if (d == nullptr) {
    return failSys("read " + what);
  }
  (void)dup.release();  // owned by the DIR stream from here on
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") {
      names.push_back(std::move(n));
    }
  }
  ::closedir(d);
  return names;
}

}  // namespace

Result<PartialDir> PartialDir::create(const std::string& dir) {
  PartialDir p;
  p.dir_ = dir;
  p.dirFd_ = UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!p.dirFd_.valid()) {
    return failSys("open image directory " + dir);
  }
  removeStalePartialDirs(p.dirFd_.get());
  std::string templ = dir + "/" + partialDirPrefix(::getpid()) + "XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) {
    return failSys("create temporary directory in " + dir);
  }
  p.partPath_ = templ;
  p.partName_ = templ.substr(templ.rfind('/') + 1);
  p.active_ = true;
  p.partFd_ = UniqueFd(::openat(p.dirFd_.get(), p.partName_.c_str(),
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!p.partFd_.valid()) {
    return failSys("open " + p.partPath_);
  }
  return p;
}

PartialDir::PartialDir(PartialDir&& o) noexcept
    : dir_(std::move(o.dir_)),
      partPath_(std::move(o.partPath_)),
      partName_(std::move(o.partName_)),
      dirFd_(std::move(o.dirFd_)),
      partFd_(std::move(o.partFd_)),
      active_(std::exchange(o.active_, false)) {}

PartialDir::~PartialDir() { removeAll(); }

void PartialDir::removeAll() {
  if (!active_) {
    return;
  }
  active_ = false;
  if (partFd_.valid()) {
    if (auto names = listDir(partFd_.get(), partPath_)) {
      for (const auto& n : *names) {
        ::unlinkat(partFd_.get(), n.c_str(), 0);
      }
    }
    partFd_.reset();
  }
  ::unlinkat(dirFd_.get(), partName_.c_str(), AT_REMOVEDIR);
}

Status PartialDir::commit(const std::vector<std::string>& names) {
  const std::string inventory = "inventory.img";
  if (std::find(names.begin(), names.end(), inventory) == names.end()) {
    return failMsg("the stream has no inventory.img; refusing to commit an incomplete dump");
  }
  auto existing = listDir(dirFd_.get(), dir_);
  if (!existing) {
    return fail(std::move(existing).error());
  }
  if (::unlinkat(dirFd_.get(), inventory.c_str(), 0) < 0 && errno != ENOENT) {
    return failSys("remove old " + dir_ + "/" + inventory);
  }
  std::set<std::string> fresh(names.begin(), names.end());
  for (const auto& n : names) {
    if (n == inventory) {
      continue;
    }
    if (::renameat(partFd_.get(), n.c_str(), dirFd_.get(), n.c_str()) < 0) {
      return failSys("move " + n + " into " + dir_);
    }
  }
  for (const auto& n : *existing) {
    if (fresh.count(n) == 0 && imageKindForFile(n).has_value()) {
      if (::unlinkat(dirFd_.get(), n.c_str(), 0) < 0 && errno != ENOENT) {
        return failSys("remove stale image " + dir_ + "/" + n);
      }
    }
  }
  if (::fsync(dirFd_.get()) < 0) {
    return failSys("fsync " + dir_);
  }
  if (::renameat(partFd_.get(), inventory.c_str(), dirFd_.get(), inventory.c_str()) < 0) {
    return failSys("move " + inventory + " into " + dir_);
  }
  if (::fsync(dirFd_.get()) < 0) {
    return failSys("fsync " + dir_);
  }
  removeAll();  // now empty
  return {};
}

}  // namespace crpipe
