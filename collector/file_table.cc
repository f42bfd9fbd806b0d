#include "collector/file_table.h"

#include <linux/kcmp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace crpipe::collector {

namespace {

// 0: the two descriptors of this process refer to the same open file description.
int kcmpSameFile(int a, int b) {
  pid_t self = ::getpid();
  return static_cast<int>(::syscall(SYS_kcmp, self, self, KCMP_FILE, a, b));
}

// "anon_inode:[eventfd]", or for a socket its family: "socket:[4711], an AF_INET socket".
std::string describeUnsupported(const OpenFile& f) {
  if (!S_ISSOCK(f.st.st_mode)) {
    return f.link;
  }
  int domain = -1;
  socklen_t len = sizeof(domain);
  if (f.dup.valid() && ::getsockopt(f.dup.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0) {
    switch (domain) {
      case AF_INET:
        return f.link + ", an AF_INET socket";
      case AF_INET6:
        return f.link + ", an AF_INET6 socket";
      case AF_NETLINK:
        return f.link + ", a netlink socket";
      case AF_PACKET:
        return f.link + ", a packet socket";
      default:
        return f.link + ", a socket of family " + std::to_string(domain);
    }
  }
  return f.link;
}

}  // namespace

void FileTable::readAhead(OpenFile& f, ReadAheadContext& ctx) const {
  for (const auto& k : kinds_) {
    k->readAhead(f, ctx);
    if (f.ahead.has_value()) {
      return;  // one kind reads a file ahead: the one it is
    }
  }
}

void FileTable::closeFiles() {
  // Thousands of duplicates, taken one after another, mostly hold consecutive numbers:
  // each run of them goes in one close_range.
  std::vector<int> fds;
  fds.reserve(entries_.size());
  for (auto& e : entries_) {
    if (e.file.dup.valid()) {
      fds.push_back(e.file.dup.release());
    }
  }
  std::sort(fds.begin(), fds.end());
  fds.erase(std::unique(fds.begin(), fds.end()), fds.end());
  for (size_t i = 0; i < fds.size();) {
    size_t j = i + 1;
    while (j < fds.size() && fds[j] == fds[j - 1] + 1) {
      ++j;
    }
    if (j - i == 1 || ::syscall(SYS_close_range, static_cast<unsigned>(fds[i]),
                                static_cast<unsigned>(fds[j - 1]), 0U) != 0) {
      for (size_t k = i; k < j; ++k) {
        (void)::close(fds[k]);
      }
    }
    i = j;
  }
}

FdKind* FileTable::kindFor(const OpenFile& f) const {
  for (const auto& k : kinds_) {
    if (k->matches(f)) {
      return k.get();
    }
  }
  return nullptr;
}

Result<FileTable::Known> FileTable::add(DumpContext& ctx, OpenFile f) {
  auto key = std::make_pair(f.st.st_dev, f.st.st_ino);
  auto& same = byInode_[key];
  // A socket inode has exactly one struct file (sock_alloc_file), so for sockets the inode
  // alone names the open file description; neither side needs a duplicate for kcmp.
  if (S_ISSOCK(f.st.st_mode) && !same.empty()) {
    return entries_[same.front()].known;
  }
  for (size_t idx : same) {
    int r = kcmpSameFile(entries_[idx].file.dup.get(), f.dup.get());
    if (r == 0) {
      return entries_[idx].known;
    }
    if (r < 0) {
      return fail(Error::sys(f.where() + ": kcmp"));
    }
  }
  FdKind* kind = kindFor(f);
  if (kind == nullptr) {
    return failMsg(f.where() + ": unsupported file kind (" + describeUnsupported(f) +
                   "); crpipe cannot dump it yet, nothing was dumped");
  }
  Known known{nextId_++, kind->typeFor(f)};
  // The id is registered before collect() so that a socket whose queue holds the socket
  // itself (or a cycle of sockets passing each other) finds its own id.
  same.push_back(entries_.size());
  entries_.push_back(Entry{std::move(f), known});
  CRPIPE_TRY(kind->collect(ctx, entries_.back().file, known.id));
  return known;
}

Status FileTable::prepareAll(DumpContext& ctx) {
  for (auto& k : kinds_) {
    CRPIPE_TRY(k->prepare(ctx));
  }
  return {};
}

Status FileTable::finishAll(DumpContext& ctx) {
  for (auto& k : kinds_) {
    CRPIPE_TRY(k->finish(ctx));
  }
  return {};
}

}  // namespace crpipe::collector
