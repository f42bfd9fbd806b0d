#include "restorer/kinds/fifo_kind.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "restorer/kinds/pipe_kind.h"
#include "restorer/kinds/regfile_kind.h"

namespace crpipe::restorer {

Result<OpenResult> FifoKind::open(OpenContext& ctx, const images::FileEntry& e) {
  const auto& fi = e.fifo();
  auto regIt = ctx.files.find(fi.regf_id());
  if (regIt == ctx.files.end() || !regIt->second->has_reg()) {
    return failMsg("fifo " + std::to_string(fi.pipe_id()) + ": its path entry (file id " +
                   std::to_string(fi.regf_id()) + ") is missing from the images");
  }
  const auto& reg = regIt->second->reg();
  const std::string what = "fifo " + reg.name();
  auto [helper, created] = ctx.fifoHelpers.try_emplace(fi.pipe_id());
  if (created) {
    // O_RDWR on a FIFO never waits for a peer (Linux), and O_NONBLOCK keeps the refill
    // from blocking; with it open, the real opens below find both a reader and a writer.
    helper->second.reset(::open(reg.name().c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!helper->second.valid()) {
      return failSys("open " + reg.name());
    }
    struct stat st {};
    if (::fstat(helper->second.get(), &st) < 0) {
      return failSys("fstat " + reg.name());
    }
    if (!S_ISFIFO(st.st_mode)) {
      return failMsg(reg.name() + " is not a FIFO any more");
    }
    auto data = ctx.fifoData.find(fi.pipe_id());
    if (data != ctx.fifoData.end()) {
      auto st2 = refillPipe(helper->second.get(), data->second.first, data->second.second);
      if (!st2) {
        return fail(std::move(st2).error().context(what));
      }
    }
  }
  return openByPathAbove(ctx, reg);
}

}  // namespace crpipe::restorer
