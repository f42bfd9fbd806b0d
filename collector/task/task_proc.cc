#include "collector/task/task_proc.h"

#include <sys/mman.h>

#include <charconv>
#include <cstdio>

namespace crpipe::collector::task {

namespace {

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')) {
      ++i;
    }
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\n') {
      ++j;
    }
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

bool toU64(std::string_view s, uint64_t& v, int base = 10) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), v, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// Each line of `text`, without its newline.
template <typename F>
void forEachLine(std::string_view text, F&& f) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {
      nl = text.size();
    }
    f(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
}

// A 64-bit capability set ("000001ffffffffff") as CRIU's two 32-bit words, low first.
bool capWords(std::string_view hex, google::protobuf::RepeatedField<uint32_t>* out) {
  uint64_t v = 0;
  if (!toU64(hex, v, 16)) {
    return false;
  }
  out->Add(static_cast<uint32_t>(v));
  out->Add(static_cast<uint32_t>(v >> 32));
  return true;
}

}  // namespace

Result<TaskStatus> parseTaskStatus(std::string_view text) {
  TaskStatus st;
  auto& c = st.creds;
  int seen = 0;
  bool bad = false;
  forEachLine(text, [&](std::string_view line) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return;
    }
    std::string_view key = line.substr(0, colon);
    auto f = split(line.substr(colon + 1));
    auto num = [&](size_t i) -> uint32_t {
      uint64_t v = 0;
      if (i >= f.size() || !toU64(f[i], v)) {
        bad = true;
      }
      return static_cast<uint32_t>(v);
    };
    if (key == "State" && !f.empty()) {
      st.state = f[0][0];
    } else if (key == "Umask" && !f.empty()) {
      uint64_t v = 0;
      bad |= !toU64(f[0], v, 8);
      st.umask = static_cast<uint32_t>(v);
      st.hasUmask = true;
    } else if (key == "Uid") {
      c.set_uid(num(0));
      c.set_euid(num(1));
      c.set_suid(num(2));
      c.set_fsuid(num(3));
      seen |= 1;
    } else if (key == "Gid") {
      c.set_gid(num(0));
      c.set_egid(num(1));
      c.set_sgid(num(2));
      c.set_fsgid(num(3));
      seen |= 2;
    } else if (key == "Groups") {
      for (size_t i = 0; i < f.size(); ++i) {
        c.add_groups(num(i));
      }
    } else if (key == "CapInh") {
      bad |= f.empty() || !capWords(f[0], c.mutable_cap_inh());
      seen |= 4;
    } else if (key == "CapPrm") {
      bad |= f.empty() || !capWords(f[0], c.mutable_cap_prm());
    } else if (key == "CapEff") {
      bad |= f.empty() || !capWords(f[0], c.mutable_cap_eff());
    } else if (key == "CapBnd") {
      bad |= f.empty() || !capWords(f[0], c.mutable_cap_bnd());
    } else if (key == "CapAmb") {
      bad |= f.empty() || !capWords(f[0], c.mutable_cap_amb());
    } else if (key == "NoNewPrivs") {
      c.set_no_new_privs(num(0));
    } else if (key == "Seccomp") {
      st.seccomp = static_cast<int>(num(0));
    } else if (key == "SigPnd" || key == "ShdPnd" || key == "SigIgn") {
      uint64_t v = 0;
      bad |= f.empty() || !toU64(f[0], v, 16);
      (key == "SigPnd" ? st.sigPnd : key == "ShdPnd" ? st.shdPnd : st.sigIgn) = v;
    }
  });
  if (bad || (seen & 7) != 7) {
    return failMsg("malformed status file (Uid, Gid or capabilities)");
  }
  c.set_secbits(0);
  return st;
}

Result<MmBounds> parseMmBounds(std::string_view text) {
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  size_t rp = text.rfind(')');
  if (rp == std::string_view::npos) {
    return failMsg("malformed stat file");
  }
  auto f = split(text.substr(rp + 1));
  // f[0] is field 3 (state): field N of proc(5) is f[N - 3].
  if (f.size() < 52 - 2) {
    return failMsg("stat file has " + std::to_string(f.size() + 2) +
                   " fields; the mm bounds need 52 (kernel 3.5 or newer)");
  }
  auto get = [&](int field, uint64_t& out) -> bool { return toU64(f[field - 3], out); };
  MmBounds b;
  uint64_t exit = 0;
  bool ok = get(26, b.startCode) && get(27, b.endCode) && get(28, b.startStack) &&
            get(45, b.startData) && get(46, b.endData) && get(47, b.startBrk) &&
            get(48, b.argStart) && get(49, b.argEnd) && get(50, b.envStart) &&
            get(51, b.envEnd) && get(52, exit);
  if (!ok) {
    return failMsg("malformed mm bounds in stat file");
  }
  b.exitCode = static_cast<uint32_t>(exit);
  return b;
}

bool SmapsVma::hasFlag(std::string_view f) const {
  for (const auto& v : vmFlags) {
    if (v == f) {
      return true;
    }
  }
  return false;
}

Result<std::vector<SmapsVma>> parseSmaps(std::string_view text) {
  std::vector<SmapsVma> out;
  std::string err;
  forEachLine(text, [&](std::string_view line) {
    if (!err.empty() || line.empty()) {
      return;
    }
    if (line.starts_with("VmFlags:")) {
      if (out.empty()) {
        err = "VmFlags before any mapping";
        return;
      }
      for (auto t : split(line.substr(8))) {
        out.back().vmFlags.emplace_back(t);
      }
      return;
    }
    // A mapping header starts with a hex address range; other lines are "Key: value".
    size_t dash = line.find('-');
    size_t sp = line.find(' ');
    if (dash == std::string_view::npos || sp == std::string_view::npos || dash > sp ||
        line.substr(0, sp).find(':') != std::string_view::npos) {
      return;
    }
    auto f = split(line);
    if (f.size() < 5) {
      err = "malformed mapping line '" + std::string(line) + "'";
      return;
    }
    SmapsVma v;
    std::string_view range = f[0];
    size_t d = range.find('-');
    std::string_view perms = f[1];
    uint64_t maj = 0, min = 0;
    std::string_view dev = f[3];
    size_t dc = dev.find(':');
    if (!toU64(range.substr(0, d), v.start, 16) || !toU64(range.substr(d + 1), v.end, 16) ||
        perms.size() != 4 || !toU64(f[2], v.pgoff, 16) || dc == std::string_view::npos ||
        !toU64(dev.substr(0, dc), maj, 16) || !toU64(dev.substr(dc + 1), min, 16) ||
        !toU64(f[4], v.inode)) {
      err = "malformed mapping line '" + std::string(line) + "'";
      return;
    }
    v.devMajor = static_cast<uint32_t>(maj);
    v.devMinor = static_cast<uint32_t>(min);
    v.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
    v.shared = perms[3] == 's';
    // The path is the rest of the line after the inode column; it may hold spaces.
    if (f.size() > 5) {
      size_t at = static_cast<size_t>(f[5].data() - line.data());
      v.path = std::string(line.substr(at));
    }
    out.push_back(std::move(v));
  });
  if (!err.empty()) {
    return failMsg("smaps: " + err);
  }
  return out;
}

}  // namespace crpipe::collector::task
