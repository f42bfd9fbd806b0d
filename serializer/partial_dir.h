#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace crpipe {

// A fresh DIR/.crpipe-partial-PID-XXXXXX that a dump is written into. Nothing in DIR itself
// changes until commit(); if the object goes away uncommitted (a truncated stream, an
// upstream failure, a full disk), everything it holds is removed with it.
class PartialDir {
 public:
  static Result<PartialDir> create(const std::string& dir);
  PartialDir(PartialDir&& other) noexcept;
  PartialDir& operator=(PartialDir&&) = delete;
  PartialDir(const PartialDir&) = delete;
  ~PartialDir();

  int fd() const { return partFd_.get(); }
  const std::string& path() const { return partPath_; }

  // Moves the written (and already fsynced) images into DIR. The old inventory.img goes
  // first and the new one comes last, so that a crash in between leaves a directory
  // that no reader takes for a complete dump. Images of an earlier dump that this one
  // does not have (fdinfo of a pid that is gone) are removed, so the directory holds
  // exactly one dump.
  Status commit(const std::vector<std::string>& names);

 private:
  PartialDir() = default;
  void removeAll();

  std::string dir_;
  std::string partPath_;
  std::string partName_;
  UniqueFd dirFd_;
  UniqueFd partFd_;
  bool active_ = false;
};

}  // namespace crpipe
