// libFuzzer target: StageReader over any byte stream. Every message it accepts is
// described (which walks its fields under the reader limits); a bad stream must end in
// an error naming the stream and an offset, never a crash or a hang.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include <kj/exception.h>

#include "common/image_format.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  crpipe::UniqueFd fd(::memfd_create("fuzz-stream", MFD_CLOEXEC));
  if (!fd.valid()) {
    abort();
  }
  if (!crpipe::writeAll(fd.get(), std::string_view(reinterpret_cast<const char*>(data), size))) {
    abort();
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  crpipe::StageReader reader(fd.get(), "fuzz");
  for (;;) {
    auto msg = reader.next();
    if (!msg) {
      if (msg.error().message().rfind("fuzz at offset ", 0) != 0) {
        abort();
      }
      return 0;
    }
    if (!msg->has_value()) {
      return 0;
    }
    // Fields are read lazily: a malformed pointer inside a framed message throws a
    // kj::Exception when touched, which every consumer must catch.
    try {
      (void)crpipe::describeMessage(**msg);
    } catch (const kj::Exception&) {
      return 0;
    }
    // Part of a pages message's payload taken, the rest left for next() to skip.
    if (reader.payloadLeft() > 0) {
      char head[64];
      auto got = reader.readPayload(head, std::min<uint64_t>(reader.payloadLeft(), sizeof(head)));
      if (!got) {
        if (got.error().message().rfind("fuzz at offset ", 0) != 0) {
          abort();
        }
        return 0;
      }
    }
  }
}
