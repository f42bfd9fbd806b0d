#pragma once

#include <fcntl.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "common/unique_fd.h"

namespace crpipe::testing {

// A temporary directory removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "crpipe-test-XXXXXX").string();
    path_ = ::mkdtemp(templ.data());
    fd_ = UniqueFd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  UniqueFd fd_;
};

}  // namespace crpipe::testing
