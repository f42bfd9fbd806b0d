#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <tuple>

#include "collector/dump_context.h"
#include "common/result.h"

namespace crpipe::collector::task {

// REG entries in files.img for files a task uses without an fd: its executable, cwd, root
// and mapped files. Each is opened through /proc (exe, cwd, root, map_files/START-END) and
// given to the FileTable like any fd's file; one entry per file and open mode, shared by
// every task and mapping that uses it.
class TaskFiles {
 public:
  // `procPath`: "/proc/PID/exe" etc.; `openFlags`: O_RDONLY, O_RDWR, O_DIRECTORY.
  Result<uint32_t> idFor(DumpContext& ctx, pid_t pid, const std::string& procPath,
                         int openFlags);

 private:
  std::map<std::tuple<dev_t, ino_t, int>, uint32_t> ids_;
};

}  // namespace crpipe::collector::task
