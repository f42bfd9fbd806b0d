#include "collector/kinds/regfile_kind.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>

namespace crpipe::collector {

namespace {
constexpr std::string_view kDeleted = " (deleted)";
}

bool RegFileKind::matches(const OpenFile& f) const {
  mode_t m = f.st.st_mode;
  return S_ISREG(m) || S_ISDIR(m) || S_ISCHR(m) || S_ISBLK(m);
}

std::string externalFileKey(int mntId, uint64_t inode) {
  char buf[64];
  snprintf(buf, sizeof(buf), "file[%x:%llx]", static_cast<unsigned>(mntId),
           static_cast<unsigned long long>(inode));
  return buf;
}

Result<images::RegFileEntry> describeByPath(DumpContext& ctx, const OpenFile& f, uint32_t id) {
  images::RegFileEntry e;
  e.set_id(id);
  // The open flags of the description; O_CLOEXEC belongs to each fd (FdinfoEntry).
  e.set_flags(f.fdinfo.flags & ~static_cast<uint32_t>(O_CLOEXEC));
  e.set_pos(f.fdinfo.pos);
  auto fown = readFown(f.dup.get());
  if (!fown) {
    return fail(std::move(fown).error().context(f.where()));
  }
  *e.mutable_fown() = *fown;
  e.set_mnt_id(f.fdinfo.mntId);
  e.set_mode(f.st.st_mode);
  if (S_ISREG(f.st.st_mode)) {
    e.set_size(static_cast<uint64_t>(f.st.st_size));
  }
  auto* ext = e.mutable_crpipe();
  ext->set_inode(f.st.st_ino);
  ext->set_dev(f.st.st_dev);
  if (S_ISCHR(f.st.st_mode) || S_ISBLK(f.st.st_mode)) {
    ext->set_rdev(f.st.st_rdev);
  }
  std::string path = f.link;
  if (f.st.st_nlink == 0 && path.ends_with(kDeleted)) {
    path.resize(path.size() - kDeleted.size());
    ext->set_unlinked(true);
  }
  const std::string key = externalFileKey(f.fdinfo.mntId, f.st.st_ino);
  if (ctx.opts.isExternal(key)) {
    // Seed 002: an external file is named by its key and reopened from an inherited fd.
    e.set_ext(true);
    e.set_name(key);
    ext->set_external_key(key);
    return e;
  }
  if (path.empty() || path[0] != '/') {
    return failMsg(f.where() + ": file has no path (" + f.link + ")");
  }
  e.set_name(path);
  return e;
}

Status RegFileKind::collect(DumpContext& ctx, OpenFile& f, uint32_t id) {
  auto reg = describeByPath(ctx, f, id);
  if (!reg) {
    return fail(std::move(reg).error());
  }
  if (reg->crpipe().unlinked() && !reg->ext()) {
    ctx.log.warn("%s: %s was unlinked; recorded by its old path only", f.where().c_str(),
                 reg->name().c_str());
  }
  images::FileEntry fe;
  fe.set_type(images::REG);
  fe.set_id(id);
  *fe.mutable_reg() = std::move(*reg);
  return ctx.out.entryTo("files.img", fe);
}

}  // namespace crpipe::collector
