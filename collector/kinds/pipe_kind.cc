#include "collector/kinds/pipe_kind.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector/file_table.h"
#include "collector/kinds/regfile_kind.h"
#include "common/proc.h"

namespace crpipe::collector {

bool PipeKind::matches(const OpenFile& f) const { return S_ISFIFO(f.st.st_mode); }

Status PipeKind::dumpData(DumpContext& ctx, const OpenFile& f, bool fifo) {
  uint64_t ino = f.st.st_ino;
  if (!dataDumped_.insert(ino).second) {
    return {};
  }
  // tee() needs a read end. Opening the pipe again through /proc gives one on the same
  // pipe without touching the target's descriptors; O_NONBLOCK so a FIFO with no writer
  // does not block us.
  UniqueFd reader;
  int rfd = f.dup.get();
  if ((f.fdinfo.flags & O_ACCMODE) != O_RDONLY) {
    reader.reset(::open(("/proc/self/fd/" + std::to_string(f.dup.get())).c_str(),
                        O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!reader.valid()) {
      return fail(Error::sys(f.where() + ": open a read end of pipe " + std::to_string(ino)));
    }
    rfd = reader.get();
  }
  int size = ::fcntl(rfd, F_GETPIPE_SZ);
  if (size < 0) {
    return fail(Error::sys(f.where() + ": F_GETPIPE_SZ"));
  }
  int tmp[2];
  if (::pipe2(tmp, O_CLOEXEC | O_NONBLOCK) < 0) {
    return fail(Error::sys("pipe2"));
  }
  UniqueFd tmpR(tmp[0]), tmpW(tmp[1]);
  if (::fcntl(tmpW.get(), F_SETPIPE_SZ, size) < 0) {
    return fail(Error::sys(f.where() + ": F_SETPIPE_SZ " + std::to_string(size)));
  }
  ssize_t n = ::tee(rfd, tmpW.get(), static_cast<size_t>(size), SPLICE_F_NONBLOCK);
  if (n < 0) {
    if (errno != EAGAIN) {
      return fail(Error::sys(f.where() + ": tee pipe " + std::to_string(ino)));
    }
    n = 0;  // empty pipe
  }
  std::string data(static_cast<size_t>(n), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t r = ::read(tmpR.get(), data.data() + got, data.size() - got);
    if (r <= 0) {
      return fail(Error::sys(f.where() + ": read copied pipe data"));
    }
    got += static_cast<size_t>(r);
  }
  // An empty pipe is recorded only when its size is not the default one (16 pages), so
  // that the restore can give it back its F_SETPIPE_SZ.
  constexpr int kDefaultPipeSize = 16 * 4096;
  if (data.empty() && size == kDefaultPipeSize) {
    return {};
  }
  images::PipeDataEntry pde;
  pde.set_pipe_id(static_cast<uint32_t>(ino));
  pde.set_bytes(static_cast<uint32_t>(data.size()));
  pde.set_size(static_cast<uint32_t>(size));
  auto img = ctx.out.image(fifo ? "fifo-data.img" : "pipes-data.img");
  if (!img) {
    return fail(std::move(img).error());
  }
  CRPIPE_TRY(ctx.out.entry(*img, pde));
  return ctx.out.raw(*img, data);
}

Status PipeKind::collect(DumpContext& ctx, OpenFile& f, uint32_t id) {
  const bool fifo = !f.link.starts_with("pipe:[");
  images::FileEntry fe;
  fe.set_id(id);
  if (fifo) {
    // A FIFO is a path (its RegFileEntry) plus the pipe behind it.
    auto reg = describeByPath(ctx, f, id);
    if (!reg) {
      return fail(std::move(reg).error());
    }
    uint32_t regId = ctx.files.newId();
    reg->set_id(regId);
    images::FileEntry regFe;
    regFe.set_type(images::REG);
    regFe.set_id(regId);
    *regFe.mutable_reg() = std::move(*reg);
    CRPIPE_TRY(ctx.out.entryTo("files.img", regFe));
    fe.set_type(images::FIFO);
    auto* fi = fe.mutable_fifo();
    fi->set_id(id);
    fi->set_pipe_id(static_cast<uint32_t>(f.st.st_ino));
    fi->set_regf_id(regId);
  } else {
    fe.set_type(images::PIPE);
    auto* pe = fe.mutable_pipe();
    pe->set_id(id);
    pe->set_pipe_id(static_cast<uint32_t>(f.st.st_ino));
    pe->set_flags(f.fdinfo.flags & ~static_cast<uint32_t>(O_CLOEXEC));
    auto fown = readFown(f.dup.get());
    if (!fown) {
      return fail(std::move(fown).error().context(f.where()));
    }
    *pe->mutable_fown() = *fown;
    const std::string key = "pipe[" + std::to_string(f.st.st_ino) + "]";
    if (ctx.opts.isExternal(key)) {
      pe->mutable_crpipe()->set_external(true);
    }
    auto& seen = anonymous_[f.st.st_ino];
    if ((f.fdinfo.flags & O_ACCMODE) == O_WRONLY) {
      seen.writer = true;
    } else {
      seen.reader = true;
    }
    if (seen.where.empty()) {
      seen.where = f.where();
    }
  }
  CRPIPE_TRY(ctx.out.entryTo("files.img", fe));
  return dumpData(ctx, f, fifo);
}

Status PipeKind::finish(DumpContext& ctx) {
  // A pipe of which the tree holds only one end may have its other end outside (a shell
  // pipeline reading the tree's output). Look for outside holders only for those pipes,
  // with one pass over /proc.
  std::map<std::string, uint64_t> wanted;
  for (const auto& [ino, seen] : anonymous_) {
    if (seen.reader != seen.writer &&
        !ctx.opts.isExternal("pipe[" + std::to_string(ino) + "]")) {
      wanted["pipe:[" + std::to_string(ino) + "]"] = ino;
    }
  }
  if (wanted.empty()) {
    return {};
  }
  auto pids = listNumericDir("/proc");
  if (!pids) {
    return fail(std::move(pids).error());
  }
  for (pid_t pid : *pids) {
    if (ctx.inTree(pid) || pid == ::getpid()) {
      continue;
    }
    const std::string fdDir = "/proc/" + std::to_string(pid) + "/fd";
    auto fds = listNumericDir(fdDir);
    if (!fds) {
      continue;  // gone, or a kernel thread
    }
    for (int fd : *fds) {
      auto link = readLink(fdDir + "/" + std::to_string(fd));
      if (!link) {
        continue;
      }
      auto it = wanted.find(*link);
      if (it != wanted.end()) {
        const auto& seen = anonymous_[it->second];
        return failMsg("pipe " + std::to_string(it->second) + " (" + seen.where +
                       ") has its other end outside the dumped tree, in fd " +
                       std::to_string(fd) + " of pid " + std::to_string(pid) +
                       "; use --external pipe[" + std::to_string(it->second) + "]");
      }
    }
  }
  return {};
}

}  // namespace crpipe::collector
