#include "restorer/kinds/regfile_kind.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace crpipe::restorer {

namespace {

constexpr int kNeverReplayed = O_CREAT | O_EXCL | O_TRUNC;

const char* typeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    case S_IFIFO:
      return "FIFO";
    case S_IFSOCK:
      return "socket";
    case S_IFLNK:
      return "symlink";
  }
  return "unknown file type";
}

}  // namespace

Status RegFileKind::check(const images::FileEntry& e) const {
  const auto& reg = e.reg();
  (void)reg;  // an external file (reg.ext()) is matched with --inherit-fd by the plan
  if (reg.crpipe().unlinked() && reg.size() != 0) {
    return failMsg("unlinked file " + reg.name() + " held " + std::to_string(reg.size()) +
                   " bytes, and the images do not carry the contents of unlinked files");
  }
  return {};
}

Result<UniqueFd> openByPath(const images::RegFileEntry& reg, int extraFlags) {
  // O_NOCTTY: reopening a terminal must not make it the controlling terminal of a
  // session leader behind the task's back; the controlling terminal is restored apart.
  int flags = (static_cast<int>(reg.flags()) & ~kNeverReplayed) | O_CLOEXEC | O_NOCTTY |
              extraFlags;
  UniqueFd fd;
  if (reg.crpipe().unlinked()) {
    // Empty and unlinked: create it where it was, keep it open, unlink it again. O_EXCL so
    // that a file created there since the dump is never taken for it.
    fd.reset(::open(reg.name().c_str(), flags | O_CREAT | O_EXCL,
                    static_cast<mode_t>(reg.mode() & 07777)));
    if (!fd.valid()) {
      return failSys("create unlinked file " + reg.name());
    }
    if (::unlink(reg.name().c_str()) < 0) {
      return failSys("unlink " + reg.name());
    }
  } else {
    fd.reset(::open(reg.name().c_str(), flags));
    if (!fd.valid()) {
      return failSys("open " + reg.name());
    }
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) {
    return failSys("fstat " + reg.name());
  }
  if (reg.has_mode() && (st.st_mode & S_IFMT) != (reg.mode() & S_IFMT)) {
    return failMsg(reg.name() + " is a " + typeName(st.st_mode) + " now; it was a " +
                   typeName(static_cast<mode_t>(reg.mode())));
  }
  // Like CRIU: a regular file whose size changed is not the file the task had open, and
  // its position may point past the end or into other data.
  if (S_ISREG(st.st_mode) && reg.has_size() && !reg.crpipe().unlinked() &&
      static_cast<uint64_t>(st.st_size) != reg.size()) {
    return failMsg(reg.name() + " changed size since the dump (" + std::to_string(reg.size()) +
                   " bytes then, " + std::to_string(st.st_size) + " now)");
  }
  if (reg.pos() != 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
    if (::lseek(fd.get(), static_cast<off_t>(reg.pos()), SEEK_SET) < 0) {
      return failSys("lseek " + reg.name() + " to " + std::to_string(reg.pos()));
    }
  }
  auto own = applyFown(fd.get(), reg.fown(), reg.flags());
  if (!own) {
    return fail(std::move(own).error().context(reg.name()));
  }
  return fd;
}

// --inherit-fd fd[N]:file[MNT_ID:INODE] / fd[N]:pipe:[INO]: crpipe's fd N, reopened
// through /proc/self/fd with the dumped flags (a description of its own, as seed 002).
Result<UniqueFd> reopenInherited(OpenContext& ctx, uint32_t id, int flags, const std::string& what) {
  auto it = ctx.inherited != nullptr ? ctx.inherited->find(id) : decltype(ctx.inherited->end()){};
  if (ctx.inherited == nullptr || it == ctx.inherited->end()) {
    return failMsg(what + ": dumped as external, and no --inherit-fd for it reached this task");
  }
  auto got = takeInherited(ctx.coordinatorPid, it->second, ctx.fdBase);
  if (!got) {
    return fail(std::move(got).error().context(what));
  }
  const std::string path = "/proc/self/fd/" + std::to_string(got->get());
  UniqueFd fd(::open(path.c_str(), (flags & ~kNeverReplayed) | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    return failSys(what + ": reopen --inherit-fd fd[" + std::to_string(it->second) + "] through " +
                   path);
  }
  return moveAbove(std::move(fd), ctx.fdBase);
}

Result<OpenResult> RegFileKind::open(OpenContext& ctx, const images::FileEntry& e) {
  if (e.reg().ext()) {
    const auto& reg = e.reg();
    auto fd = reopenInherited(ctx, e.id(), static_cast<int>(reg.flags()), "external file " + reg.name());
    if (!fd) {
      return fail(std::move(fd).error());
    }
    struct stat st {};
    if (reg.pos() != 0 && ::fstat(fd->get(), &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
        ::lseek(fd->get(), static_cast<off_t>(reg.pos()), SEEK_SET) < 0) {
      return failSys("external file " + reg.name() + ": lseek to " + std::to_string(reg.pos()));
    }
    auto own = applyFown(fd->get(), reg.fown(), reg.flags());
    if (!own) {
      return fail(std::move(own).error().context(reg.name()));
    }
    return OpenResult::done(std::move(*fd));
  }
  return openByPathAbove(ctx, e.reg());
}

Result<OpenResult> openByPathAbove(const OpenContext& ctx, const images::RegFileEntry& reg) {
  auto fd = openByPath(reg, 0);
  if (!fd) {
    return fail(std::move(fd).error());
  }
  auto moved = moveAbove(std::move(*fd), ctx.fdBase);
  if (!moved) {
    return fail(std::move(moved).error());
  }
  return OpenResult::done(std::move(*moved));
}

}  // namespace crpipe::restorer
