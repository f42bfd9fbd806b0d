#include "collector/task/task_files.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "collector/file_table.h"
#include "common/proc.h"

namespace crpipe::collector::task {

Result<uint32_t> TaskFiles::idFor(DumpContext& ctx, pid_t pid, const std::string& procPath,
                                  int openFlags) {
  OpenFile f;
  f.dup.reset(::open(procPath.c_str(), openFlags | O_CLOEXEC));
  if (!f.dup.valid()) {
    return fail(Error::sys("open " + procPath));
  }
  if (::fstat(f.dup.get(), &f.st) < 0) {
    return fail(Error::sys("fstat " + procPath));
  }
  auto key = std::make_tuple(f.st.st_dev, f.st.st_ino, openFlags);
  auto it = ids_.find(key);
  if (it != ids_.end()) {
    return it->second;
  }
  auto link = readLink(procPath);
  if (!link) {
    return fail(std::move(link).error());
  }
  f.link = *link;
  // The mount id the kernel reports for our own descriptor is the file's.
  auto info = readProcFile("/proc/self/fdinfo/" + std::to_string(f.dup.get()));
  if (!info) {
    return fail(std::move(info).error());
  }
  auto parsed = parseFdInfo(*info);
  if (!parsed) {
    return fail(std::move(parsed).error().context(procPath));
  }
  f.fdinfo = *parsed;
  f.fdinfo.pos = 0;
  f.fdinfo.flags = static_cast<uint32_t>(openFlags & ~O_DIRECTORY);
  f.pid = pid;
  auto known = ctx.files.add(ctx, std::move(f));
  if (!known) {
    return fail(std::move(known).error().context(procPath));
  }
  if (known->type != images::REG) {
    return failMsg(procPath + ": not a regular file, directory or device (" + *link + ")");
  }
  ids_.emplace(key, known->id);
  return known->id;
}

}  // namespace crpipe::collector::task
