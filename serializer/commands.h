#pragma once

#include <cstdio>
#include <string>

#include "common/log.h"
#include "common/result.h"

namespace crpipe {

// Where a stage reads or writes its stream: an fd it inherited, or a path ("-" is
// stdin/stdout).
struct StreamEndpoint {
  std::string path = "-";
  int fd = -1;
};

struct WriteOptions {
  std::string dir;
  StreamEndpoint in;
  int controlFd = -1;
  bool pageRefs = false;  // read the pages ImagePageRefs name from the frozen tasks
};

struct ReadOptions {
  std::string dir;
  StreamEndpoint out;
  bool noPages = false;  // leave pages-N.img off the stream (the reader maps them)
  bool dataRefs = false;  // entries' data as file offsets (ImageChunk.dataAt)
};

struct DecodeOptions {
  StreamEndpoint in;
};

// serializer write: stream -> images, committed into dir only once the stream is whole.
class ControlSender;
// Sends its Failure on `ctl` itself (with Failure.upstream when the stream is to blame),
// before the input closes.
Status runWrite(const WriteOptions& opts, ControlSender& ctl, Log& log);
// serializer read: image directory -> stream.
Status runRead(const ReadOptions& opts, Log& log);
// serializer decode: every message of a stream, readably, to `out`.
Status runDecode(const DecodeOptions& opts, FILE* out);

}  // namespace crpipe
