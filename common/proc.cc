#include "common/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <optional>

#include "common/image_format.h"
#include "common/unique_fd.h"

namespace crpipe {

namespace {

template <typename T>
bool parseNum(std::string_view s, T& out, int base = 10) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

std::vector<std::string_view> splitSpaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t')) {
      ++i;
    }
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\n' && s[j] != '\t') {
      ++j;
    }
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

}  // namespace

Result<ProcStat> parseProcStat(std::string_view text) {
  // comm may hold spaces and parentheses: it runs from the first '(' to the last ')'.
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return failMsg("malformed stat: no (comm)");
  }
  ProcStat st;
  if (!parseNum(text.substr(0, open > 0 ? open - 1 : 0), st.pid)) {
    return failMsg("malformed stat: bad pid");
  }
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  auto f = splitSpaces(text.substr(close + 1));
  // Fields after comm, numbered from 3 (state) as in proc(5).
  if (f.size() < 20) {
    return failMsg("malformed stat: " + std::to_string(f.size()) + " fields after comm");
  }
  st.state = f[0].empty() ? '?' : f[0][0];
  bool ok = parseNum(f[1], st.ppid) && parseNum(f[2], st.pgid) && parseNum(f[3], st.sid) &&
            parseNum(f[4], st.ttyNr) && parseNum(f[6], st.flags) &&
            parseNum(f[19], st.startTime);
  if (!ok) {
    return failMsg("malformed stat: bad number");
  }
  return st;
}

Result<FdInfo> parseFdInfo(std::string_view text) {
  FdInfo fi;
  bool havePos = false, haveFlags = false;
  size_t i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string_view::npos) {
      nl = text.size();
    }
    std::string_view line = text.substr(i, nl - i);
    i = nl + 1;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    std::string_view key = line.substr(0, colon);
    std::string_view val = line.substr(colon + 1);
    while (!val.empty() && (val.front() == ' ' || val.front() == '\t')) {
      val.remove_prefix(1);
    }
    if (key == "pos") {
      havePos = parseNum(val, fi.pos);
    } else if (key == "flags") {
      haveFlags = parseNum(val, fi.flags, 8);
    } else if (key == "mnt_id") {
      parseNum(val, fi.mntId);
    } else if (key == "ino") {
      parseNum(val, fi.ino);
    }
  }
  if (!havePos || !haveFlags) {
    return failMsg("malformed fdinfo: no pos or flags");
  }
  return fi;
}

std::vector<pid_t> parsePidList(std::string_view text) {
  std::vector<pid_t> out;
  for (auto w : splitSpaces(text)) {
    pid_t p;
    if (parseNum(w, p)) {
      out.push_back(p);
    }
  }
  return out;
}

Result<std::vector<ProcLimit>> parseProcLimits(std::string_view text) {
  // "%-25s %-20s %-20s %-10s": a name with spaces in 26 columns, then soft and hard.
  constexpr size_t kNameWidth = 26;
  std::vector<ProcLimit> out;
  size_t pos = text.find('\n');  // the header
  if (pos == std::string_view::npos || !text.starts_with("Limit")) {
    return failMsg("/proc/PID/limits: no header");
  }
  auto number = [](std::string_view v) -> std::optional<uint64_t> {
    if (v == "unlimited") {
      return ~uint64_t{0};
    }
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size()) {
      return std::nullopt;
    }
    return n;
  };
  while (++pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol;
    if (line.empty()) {
      continue;
    }
    if (line.size() <= kNameWidth) {
      return failMsg("/proc/PID/limits: short line '" + std::string(line) + "'");
    }
    std::string_view rest = line.substr(kNameWidth);
    std::string_view fields[2];
    for (auto& f : fields) {
      size_t b = rest.find_first_not_of(' ');
      size_t e = rest.find(' ', b);
      if (b == std::string_view::npos) {
        return failMsg("/proc/PID/limits: missing limit in '" + std::string(line) + "'");
      }
      f = rest.substr(b, e == std::string_view::npos ? e : e - b);
      rest = e == std::string_view::npos ? std::string_view() : rest.substr(e);
    }
    auto cur = number(fields[0]);
    auto max = number(fields[1]);
    if (!cur || !max) {
      return failMsg("/proc/PID/limits: bad limit in '" + std::string(line) + "'");
    }
    out.push_back({*cur, *max});
  }
  return out;
}

Result<std::string> readProcFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return failSys("open " + path);
  }
  auto r = readAll(fd.get());
  if (!r) {
    return fail(std::move(r).error().context(path));
  }
  return r;
}

Result<std::vector<int>> listNumericDir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) {
    return failSys("opendir " + path);
  }
  std::vector<int> out;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    int n;
    std::string_view name(de->d_name);
    if (parseNum(name, n)) {
      out.push_back(n);
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::string> readLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf));
  if (n < 0) {
    return failSys("readlink " + path);
  }
  return std::string(buf, static_cast<size_t>(n));
}

std::optional<std::string_view> procStatusField(std::string_view status, std::string_view key) {
  size_t at = 0;
  while (at < status.size()) {
    size_t nl = status.find('\n', at);
    std::string_view line = status.substr(at, nl == std::string_view::npos ? nl : nl - at);
    at = nl == std::string_view::npos ? status.size() : nl + 1;
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ':') {
      std::string_view v = line.substr(key.size() + 1);
      size_t b = v.find_first_not_of(" \t");
      if (b == std::string_view::npos) {
        return std::string_view();
      }
      size_t e = v.find_last_not_of(" \t");
      return v.substr(b, e - b + 1);
    }
  }
  return std::nullopt;
}

size_t procFdTableSize(pid_t pid) {
  auto text = readProcFile("/proc/" + std::to_string(pid) + "/status");
  if (!text) {
    return 0;
  }
  auto v = procStatusField(*text, "FDSize");
  return v ? static_cast<size_t>(std::strtoull(std::string(*v).c_str(), nullptr, 10)) : 0;
}

bool inInitialUserNs() {
  for (const char* map : {"/proc/self/uid_map", "/proc/self/gid_map"}) {
    auto text = readProcFile(map);
    if (!text) {
      return false;
    }
    unsigned long a = 1, b = 1, n = 0;
    if (std::sscanf(text->c_str(), "%lu %lu %lu", &a, &b, &n) != 3 || a != 0 || b != 0 ||
        n != 4294967295UL) {
      return false;
    }
  }
  return true;
}

}  // namespace crpipe
