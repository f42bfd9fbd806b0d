#include "restorer/kinds/pipe_kind.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/image_format.h"
#include "restorer/kinds/regfile_kind.h"

namespace crpipe::restorer {

Status PipeKind::check(const images::FileEntry& e) const {
  (void)e;  // an external pipe is matched with --inherit-fd by the plan
  return {};
}

Status refillPipe(int writeEnd, const images::PipeDataEntry& entry, const std::string& data) {
  if (entry.has_size() && entry.size() != 0 &&
      ::fcntl(writeEnd, F_SETPIPE_SZ, static_cast<int>(entry.size())) < 0) {
    return failSys("F_SETPIPE_SZ " + std::to_string(entry.size()));
  }
  return writeAll(writeEnd, data);
}

Result<OpenResult> PipeKind::open(OpenContext& ctx, const images::FileEntry& e) {
  const auto& pe = e.pipe();
  const std::string what = "pipe " + std::to_string(pe.pipe_id());
  if (pe.crpipe().external()) {
    auto fd = reopenInherited(ctx, e.id(), static_cast<int>(pe.flags()) & (O_ACCMODE | O_NONBLOCK), what);
    if (!fd) {
      return fail(std::move(fd).error());
    }
    auto own = applyFown(fd->get(), pe.fown(), pe.flags());
    if (!own) {
      return fail(std::move(own).error().context(what));
    }
    return OpenResult::done(std::move(*fd));
  }
  auto [it, created] = ctx.pipes.try_emplace(pe.pipe_id());
  CreatedPipe& p = it->second;
  if (created) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) < 0) {
      return failSys(what + ": pipe2");
    }
    p.read.reset(ends[0]);
    p.write.reset(ends[1]);
    auto data = ctx.pipeData.find(pe.pipe_id());
    if (data != ctx.pipeData.end()) {
      auto st = refillPipe(p.write.get(), data->second.first, data->second.second);
      if (!st) {
        return fail(std::move(st).error().context(what));
      }
    }
  }
  const bool writer = (pe.flags() & O_ACCMODE) == O_WRONLY;
  UniqueFd& end = writer ? p.write : p.read;
  bool& given = writer ? p.writeGiven : p.readGiven;
  UniqueFd fd;
  if (!given) {
    // The first description of this end is the end pipe2() made (a duplicate of it; the
    // original closes with the context).
    fd.reset(::fcntl(end.get(), F_DUPFD_CLOEXEC, ctx.fdBase));
    if (!fd.valid()) {
      return failSys(what + ": F_DUPFD_CLOEXEC");
    }
    given = true;
  } else {
    // Another description of the same end (the pipe was reopened through /proc): a new
    // open of the same pipe.
    const std::string path = "/proc/self/fd/" + std::to_string(end.get());
    UniqueFd again(::open(path.c_str(), (writer ? O_WRONLY : O_RDONLY) | O_CLOEXEC));
    if (!again.valid()) {
      return failSys(what + ": reopen " + path);
    }
    auto moved = moveAbove(std::move(again), ctx.fdBase);
    if (!moved) {
      return fail(std::move(moved).error());
    }
    fd = std::move(*moved);
  }
  // F_SETFL changes only the status flags a pipe can have (O_NONBLOCK, O_DIRECT: packet
  // mode); the access mode is the end's.
  int status = static_cast<int>(pe.flags()) & (O_NONBLOCK | O_DIRECT);
  if (status != 0 && ::fcntl(fd.get(), F_SETFL, status) < 0) {
    return failSys(what + ": F_SETFL");
  }
  auto own = applyFown(fd.get(), pe.fown(), pe.flags());
  if (!own) {
    return fail(std::move(own).error().context(what));
  }
  return OpenResult::done(std::move(fd));
}

}  // namespace crpipe::restorer
