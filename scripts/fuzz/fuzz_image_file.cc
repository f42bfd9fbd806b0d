// libFuzzer target: ImageFile::fromBytes on any bytes, under every image file name.
// It must refuse bad input with an error, never crash or read out of bounds, and the
// pieces of an accepted file must lie inside it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/image_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* const kNames[] = {
      "inventory.img", "pstree.img",     "fdinfo-1.img", "files.img",  "pipes-data.img",
      "fifo-data.img", "sk-queues.img",  "pages-1.img",  "other.img",
  };
  if (size == 0) {
    return 0;
  }
  // The first byte picks the file name (which decides the expected kind).
  std::string name = kNames[data[0] % (sizeof(kNames) / sizeof(kNames[0]))];
  std::string bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  auto f = crpipe::ImageFile::fromBytes(name, bytes);
  if (!f) {
    if (f.error().message().find(name) == std::string::npos) {
      abort();  // every refusal names the file
    }
    return 0;
  }
  uint64_t end = 0;
  for (const auto& p : f->pieces()) {
    if (p.offset < end || p.data.size() > bytes.size()) {
      abort();
    }
    end = p.offset + p.data.size();
  }
  if (end > bytes.size()) {
    abort();
  }
  return 0;
}
