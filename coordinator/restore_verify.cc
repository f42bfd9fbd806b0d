#include "coordinator/restore_verify.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/proc.h"
#include "common/unique_fd.h"

namespace crpipe {

namespace {

constexpr uint32_t kIgnoredFlags = O_LARGEFILE | O_CLOEXEC;

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string hex(const std::string& s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The buffered data of a pipe, read without consuming it (tee into a scratch pipe), as
// the collector does.
Result<std::string> peekPipe(int fd, uint32_t accmode) {
  UniqueFd reader;
  int rfd = fd;
  if (accmode != O_RDONLY) {
    reader.reset(::open(("/proc/self/fd/" + std::to_string(fd)).c_str(),
                        O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!reader.valid()) {
      return failSys("reopen for reading");
    }
    rfd = reader.get();
  }
  int size = ::fcntl(rfd, F_GETPIPE_SZ);
  int tmp[2];
  if (size < 0 || ::pipe2(tmp, O_CLOEXEC | O_NONBLOCK) < 0) {
    return failSys("scratch pipe");
  }
  UniqueFd r(tmp[0]), w(tmp[1]);
  if (::fcntl(w.get(), F_SETPIPE_SZ, size) < 0) {
    return failSys("F_SETPIPE_SZ");
  }
  ssize_t n = ::tee(rfd, w.get(), static_cast<size_t>(size), SPLICE_F_NONBLOCK);
  if (n < 0) {
    if (errno != EAGAIN) {
      return failSys("tee");
    }
    return std::string();
  }
  std::string data(static_cast<size_t>(n), '\0');
  if (::read(r.get(), data.data(), data.size()) != n) {
    return failSys("read scratch pipe");
  }
  return data;
}

}  // namespace

TreeCheck checkRestoredTree(const RestorePlan& plan,
                            const std::map<pid_t, std::vector<int>>& serviceFds) {
  TreeCheck out;
  auto problem = [&out](std::string s) { out.problems.push_back(std::move(s)); };
  std::map<uint32_t, std::pair<pid_t, int>> firstHolder;  // file id -> (pid, fd)
  std::map<std::pair<bool, uint32_t>, std::string> pipeLink;  // (fifo, pipe_id) -> link
  std::map<std::string, std::pair<bool, uint32_t>> linkPipe;
  std::string json = "{\"tasks\": [";
  bool firstTask = true;
  for (const auto& t : plan.tasks) {
    const std::string p = "pid " + std::to_string(t.pid);
    const std::string proc = "/proc/" + std::to_string(t.pid);
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, t.pid, 0)));
    auto statText = readProcFile(proc + "/stat");
    if (!pidfd.valid() || !statText) {
      problem(p + ": not running");
      continue;
    }
    auto st = parseProcStat(*statText);
    if (!st) {
      problem(p + ": " + st.error().str());
      continue;
    }
    if (t.ppid != 0 && st->ppid != t.ppid) {
      problem(p + ": parent " + std::to_string(st->ppid) + ", expected " + std::to_string(t.ppid));
    }
    if (st->pgid != t.pgid) {
      problem(p + ": process group " + std::to_string(st->pgid) + ", expected " +
              std::to_string(t.pgid));
    }
    if (st->sid != t.sid) {
      problem(p + ": session " + std::to_string(st->sid) + ", expected " + std::to_string(t.sid));
    }
    json += std::string(firstTask ? "" : ", ") + "{\"pid\": " + std::to_string(t.pid) +
            ", \"ppid\": " + std::to_string(st->ppid) + ", \"pgid\": " + std::to_string(st->pgid) +
            ", \"sid\": " + std::to_string(st->sid) + ", \"fds\": [";
    firstTask = false;

    auto open = listNumericDir(proc + "/fd");
    std::set<int> present(open ? open->begin() : std::vector<int>::const_iterator(),
                          open ? open->end() : std::vector<int>::const_iterator());
    std::set<int> expected;
    for (const auto& fd : t.fds) {
      expected.insert(static_cast<int>(fd.fd()));
    }
    auto svc = serviceFds.find(t.pid);
    for (int fd : present) {
      bool service = svc != serviceFds.end() &&
                     std::find(svc->second.begin(), svc->second.end(), fd) != svc->second.end();
      if (!expected.contains(fd) && !service) {
        problem(p + ": fd " + std::to_string(fd) + " is open but not in the images");
      }
    }
    bool firstFd = true;
    for (const auto& fd : t.fds) {
      const int n = static_cast<int>(fd.fd());
      const std::string w = p + " fd " + std::to_string(n);
      if (!present.contains(n)) {
        problem(w + ": missing");
        continue;
      }
      UniqueFd dup(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), n, 0)));
      auto link = readLink(proc + "/fd/" + std::to_string(n));
      auto infoText = readProcFile(proc + "/fdinfo/" + std::to_string(n));
      auto info = infoText ? parseFdInfo(*infoText) : Result<FdInfo>(fail(infoText.error()));
      if (!dup.valid() || !link || !info) {
        problem(w + ": cannot inspect it");
        continue;
      }
      const bool cloexec = (info->flags & O_CLOEXEC) != 0;
      if (cloexec != ((fd.flags() & FD_CLOEXEC) != 0)) {
        problem(w + ": close-on-exec is " + (cloexec ? "set" : "clear") + ", not as dumped");
      }
      const images::FileEntry& fe = plan.files.at(fd.id());
      std::string data;
      bool hasData = false;
      const images::RegFileEntry* reg = nullptr;
      const images::FownEntry* fown = nullptr;
      uint32_t wantFlags = 0;
      if (fe.type() == images::REG) {
        reg = &fe.reg();
      } else if (fe.type() == images::FIFO) {
        reg = &plan.files.at(fe.fifo().regf_id()).reg();
      }
      if (reg != nullptr) {
        std::string want = reg->name() + (reg->crpipe().unlinked() ? " (deleted)" : "");
        if (*link != want) {
          problem(w + ": points at " + *link + ", expected " + want);
        }
        struct stat sb {};
        if (fe.type() == images::REG && ::fstat(dup.get(), &sb) == 0 &&
            (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode)) && info->pos != reg->pos()) {
          problem(w + ": position " + std::to_string(info->pos) + ", expected " +
                  std::to_string(reg->pos()));
        }
        wantFlags = reg->flags();
        fown = &reg->fown();
      } else if (fe.type() == images::PIPE) {
        wantFlags = fe.pipe().flags();
        fown = &fe.pipe().fown();
      }
      if ((info->flags & ~kIgnoredFlags) != (wantFlags & ~kIgnoredFlags)) {
        char buf[96];
        snprintf(buf, sizeof(buf), ": flags 0%o, expected 0%o", info->flags & ~kIgnoredFlags,
                 wantFlags & ~kIgnoredFlags);
        problem(w + buf);
      }
      if (fown != nullptr) {
        f_owner_ex owner{};
        int sig = ::fcntl(dup.get(), F_GETSIG);
        if (::fcntl(dup.get(), F_GETOWN_EX, &owner) < 0 ||
            static_cast<uint32_t>(owner.pid) != fown->pid() ||
            static_cast<uint32_t>(sig) != fown->signum()) {
          problem(w + ": owner " + std::to_string(owner.pid) + " signal " + std::to_string(sig) +
                  ", expected " + std::to_string(fown->pid()) + " signal " +
                  std::to_string(fown->signum()));
        }
      }
      if (fe.type() == images::PIPE || fe.type() == images::FIFO) {
        const bool fifo = fe.type() == images::FIFO;
        const uint32_t pipeId = fifo ? fe.fifo().pipe_id() : fe.pipe().pipe_id();
        const auto key = std::make_pair(fifo, pipeId);
        // Descriptions of one pipe point at one restored pipe; different pipes apart.
        std::string pipeKey = *link;
        if (fifo) {
          struct stat sb {};
          ::fstat(dup.get(), &sb);
          pipeKey = "fifo ino " + std::to_string(sb.st_ino);
        }
        auto [it, fresh] = pipeLink.try_emplace(key, pipeKey);
        if (!fresh && it->second != pipeKey) {
          problem(w + ": on " + pipeKey + ", but pipe " + std::to_string(pipeId) + " is " + it->second);
        }
        auto [back, freshBack] = linkPipe.try_emplace(pipeKey, key);
        if (!freshBack && back->second != key) {
          problem(w + ": two dumped pipes were restored as one (" + pipeKey + ")");
        }
        auto peeked = peekPipe(dup.get(), wantFlags & O_ACCMODE);
        if (!peeked) {
          problem(w + ": " + peeked.error().str());
        } else {
          data = *peeked;
          hasData = true;
          const auto& src = fifo ? plan.fifoData : plan.pipeData;
          auto want = src.find(pipeId);
          std::string wantData(want != src.end() ? plan.images->data(*want->second)
                                                  : std::string_view());
          if (data != wantData) {
            problem(w + ": pipe holds " + std::to_string(data.size()) + " bytes, the images " +
                    std::to_string(wantData.size()) + " (or different bytes)");
          }
        }
      }
      // One description per file id: every holder shares it, and different ids differ.
      auto [holder, freshHolder] = firstHolder.try_emplace(fd.id(), std::make_pair(t.pid, n));
      if (!freshHolder &&
          ::syscall(SYS_kcmp, holder->second.first, t.pid, KCMP_FILE, holder->second.second, n) != 0) {
        problem(w + ": does not share its open file description with pid " +
                std::to_string(holder->second.first) + " fd " +
                std::to_string(holder->second.second));
      }
      for (const auto& [id, h] : firstHolder) {
        if (id != fd.id() &&
            ::syscall(SYS_kcmp, h.first, t.pid, KCMP_FILE, h.second, n) == 0) {
          problem(w + ": shares a description with pid " + std::to_string(h.first) + " fd " +
                  std::to_string(h.second) + ", which is another file in the images");
        }
      }
      char flagsBuf[32];
      snprintf(flagsBuf, sizeof(flagsBuf), "%u", info->flags & ~kIgnoredFlags);
      json += std::string(firstFd ? "" : ", ") + "{\"fd\": " + std::to_string(n) +
              ", \"link\": " + jsonString(*link) + ", \"pos\": " + std::to_string(info->pos) +
              ", \"flags\": " + flagsBuf + ", \"cloexec\": " + (cloexec ? "true" : "false") +
              (hasData ? ", \"data\": \"" + hex(data) + "\"" : std::string()) + "}";
      firstFd = false;
    }
    json += "]}";
  }
  json += "], \"problems\": [";
  for (size_t i = 0; i < out.problems.size(); ++i) {
    json += (i == 0 ? "" : ", ") + jsonString(out.problems[i]);
  }
  json += "]}\n";
  out.report = std::move(json);
  return out;
}

}  // namespace crpipe
