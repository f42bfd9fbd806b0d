#pragma once

#include <capnp/message.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "protos/stage.capnp.h"

namespace crpipe {

// The coordinator's end of a stage's control channel (a unix socket) on the libuv loop.
// Bytes are buffered until capnp::expectedSizeInWordsFromPrefix says a whole message is
// there; each message is then handed to onMessage. The stage's messages come from
// another process, so they are read with the stage protocol's reader limits.
class ControlChannel {
 public:
  struct Callbacks {
    std::function<void(proto::Message::Reader)> onMessage;
    // End of the channel: nullptr at a clean EOF between messages, else what went wrong.
    std::function<void(const Error*)> onClosed;
  };

  static Result<std::unique_ptr<ControlChannel>> open(uv_loop_t* loop, UniqueFd fd,
                                                      std::string name, Callbacks cb);
  ~ControlChannel();
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  const std::string& name() const { return name_; }
  bool readable() const { return reading_; }

  // Queues a message; it is written in order, and before a later shutdownWrite().
  Status send(capnp::MessageBuilder& msg);
  // The same for a large message, without copying it: its segments are written as they
  // are, and the builder lives until the write is done.
  Status send(std::unique_ptr<capnp::MessageBuilder> msg);
  // The stage reads EOF once queued messages are out; its messages still arrive.
  void shutdownWrite();
  // Stops everything; no more callbacks.
  void close();

 private:
  struct Handle;
  ControlChannel() = default;
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  void parse();
  void finish(const Error* err);

  std::string name_;
  Handle* handle_ = nullptr;
  Callbacks cb_;
  std::string buf_;
  uint64_t consumed_ = 0;
  bool reading_ = false;
  bool writeShut_ = false;
};

}  // namespace crpipe
