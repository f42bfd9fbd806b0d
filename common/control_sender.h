#pragma once

#include <memory>
#include <string>

#include "common/log.h"
#include "common/result.h"
#include "common/stage_stream.h"

namespace crpipe {

// A stage's side of its control channel to the coordinator: Hello first, then Progress,
// and finally Committed or Failure. Without a channel (fd < 0) every call does nothing.
// A coordinator that went away is not the stage's failure: send errors are logged and
// otherwise ignored (the collector notices the missing verdict separately).
class ControlSender {
 public:
  ControlSender(int fd, Log& log);
  ~ControlSender();

  bool connected() const { return writer_ != nullptr; }
  void hello(proto::Hello::Role role, int32_t rootPid = 0);
  void progress(const std::string& step, uint64_t done, uint64_t total, const std::string& detail);
  // `upstream`: this stage failed only because the stage feeding it did (Failure.upstream).
  void failure(const Error& err, bool upstream = false);
  void committed(const std::string& dir, uint32_t images, uint64_t bytes);

 private:
  void send(capnp::MessageBuilder& mb);

  std::unique_ptr<StageWriter> writer_;
  Log& log_;
};

}  // namespace crpipe
