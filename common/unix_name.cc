#include "common/unix_name.h"

#include <cstdio>

namespace crpipe {

std::string printableUnixName(const std::string& raw) {
  if (raw.empty()) {
    return "";
  }
  const bool abstract = raw[0] == '\0';
  std::string out = abstract ? "@" : "";
  for (size_t i = abstract ? 1 : 0; i < raw.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c == 0 && !abstract) {
      break;
    }
    if (c == 0) {
      out += "\\0";
    } else if (c < 0x20 || c >= 0x7f || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace crpipe
