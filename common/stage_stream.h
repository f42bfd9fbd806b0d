#pragma once

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/io.h>

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "protos/stage.capnp.h"

namespace crpipe {

// Reads Cap'n Proto messages of the stage protocol from an fd (pipe, socket, file) front
// to back. A stream that ends inside a message, or a message that is malformed or over
// the limits, is refused with the stream's name and the byte offset of that message.
class StageReader {
 public:
  StageReader(int fd, std::string name);
  ~StageReader();
  StageReader(const StageReader&) = delete;
  StageReader& operator=(const StageReader&) = delete;

  // The next message; std::nullopt at a clean end of stream (between two messages).
  // The returned reader stays valid until the next call. After an ImagePages message its
  // `length` bytes follow on the stream: take them with readPayload(); whatever is not
  // taken is skipped by the next call.
  Result<std::optional<proto::Message::Reader>> next();
  // The message next() returned last, handed over: its readers stay valid as long as the
  // returned object lives (a restorer keeps its task order and sends queued bytes straight
  // from it). nullptr if there is none.
  std::unique_ptr<capnp::MessageReader> takeLast();

  // Bytes of the last message's payload not taken yet (0 unless it was ImagePages).
  uint64_t payloadLeft() const { return payloadLeft_; }
  // Takes the next `len` bytes of the payload straight into `dst` (at most one copy: from
  // the fd, or from what was read ahead). A stream that ends inside the payload is refused
  // with the stream's name and the offsets of the message and of the cut.
  Status readPayload(void* dst, size_t len);
  // Moves the next `len` bytes of the payload to `outFd` (a file, appended at its
  // position) with splice(2) through a pipe of the reader's own: from a socket or pipe the
  // bytes reach the file with one copy, the kernel's into the file's pages, none into this
  // process. An fd that cannot splice gets them through a buffer. Errors as readPayload's,
  // or name `outName`.
  Status splicePayload(int outFd, size_t len, const std::string& outName);

  uint64_t offset() const { return offset_; }
  const std::string& name() const { return name_; }

 private:
  class Counting;

  std::string name_;
  std::unique_ptr<kj::FdInputStream> raw_;
  std::unique_ptr<kj::BufferedInputStreamWrapper> buffered_;
  std::unique_ptr<Counting> counting_;
  std::unique_ptr<capnp::InputStreamMessageReader> current_;
  uint64_t offset_ = 0;  // offset of the start of the current message
  uint64_t payloadLeft_ = 0;
  int fd_;
  UniqueFd pipeRead_, pipeWrite_;  // splicePayload's pipe, made at its first use
  bool noSplice_ = false;          // the fd cannot splice: buffer copies
  bool pipeIn_ = false;            // the fd is a pipe: payloads splice straight to a file
  std::string bounce_;
};

// Writes stage messages to an fd, buffered. flush() before handing the fd on or waiting
// for an answer.
class StageWriter {
 public:
  explicit StageWriter(int fd);
  ~StageWriter();
  StageWriter(const StageWriter&) = delete;
  StageWriter& operator=(const StageWriter&) = delete;

  Status write(capnp::MessageBuilder& msg);
  // `msg` (an ImagePages announcing payload.size() bytes), then the payload as it is; a
  // payload larger than the buffer goes to the fd straight from the caller's memory.
  Status writeWithPayload(capnp::MessageBuilder& msg, std::string_view payload);
  // The same, but where the stream is a pipe the payload's pages go into it by reference
  // (vmsplice: no copy): the caller must leave them unchanged until consumedUpTo() reaches
  // bytesWritten() as it is on return. Elsewhere it is writeWithPayload().
  Status writeWithPayloadByReference(capnp::MessageBuilder& msg, std::string_view payload);
  // How far the reader has read: everything buffered is flushed first, then (pipes)
  // bytesWritten() minus what the pipe still holds (FIONREAD); bytesWritten() elsewhere.
  Result<uint64_t> consumedUpTo();
  Status flush();
  uint64_t bytesWritten() const { return bytes_; }
  // What the pipe holds (F_GETPIPE_SZ, read once); 0 where the fd is not a pipe.
  size_t pipeCapacity() const { return pipeCapacity_; }

 private:
  std::unique_ptr<kj::FdOutputStream> raw_;
  std::unique_ptr<kj::BufferedOutputStreamWrapper> buffered_;
  uint64_t bytes_ = 0;
  bool pipe_ = false;  // the fd is a pipe: payloads may be lent to it (vmsplice)
  size_t pipeCapacity_ = 0;
};

// Gives a stream fd room for a few page batches in flight, so that a writer and its
// reader on two CPUs do not take turns batch by batch: a socket's send buffer (unix
// stream sockets count queued bytes against the sender) to `bytes`, a pipe to 1 MiB.
// Best effort: a file, or a limit the caller may not exceed, leaves the fd as it was.
void widenStreamBuffer(int fd, int bytes);

// Limits for messages read from outside: a raw batch is at most a few MiB.
capnp::ReaderOptions stageReaderOptions();
// The largest payload an ImagePages message may announce.
inline constexpr uint64_t kMaxPagesPayload = 64ull << 20;

// Human-readable one-line description of a message, for `crpipe stage decode`.
std::string describeMessage(proto::Message::Reader msg);

}  // namespace crpipe
