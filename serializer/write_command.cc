#include <kj/exception.h>
#include <sys/stat.h>

#include <optional>

#include "common/image_stream.h"
#include "common/page_copier.h"
#include "common/stage_stream.h"
#include "serializer/commands.h"
#include "common/control_sender.h"
#include "serializer/endpoint.h"
#include "serializer/partial_dir.h"

namespace crpipe {

namespace {

constexpr uint64_t kProgressEvery = 8ull << 20;

Status checkHello(proto::Hello::Reader h, const std::string& where) {
  if (h.getProtocolVersion() != proto::PROTOCOL_VERSION) {
    return failMsg(where + ": stream speaks protocol " + std::to_string(h.getProtocolVersion()) +
                   ", this serializer speaks " + std::to_string(proto::PROTOCOL_VERSION));
  }
  return {};
}

// Reads the stream into `part` until End; returns the sink's tallies through `sink`.
// `upstream` is set when the failure is the collector's (its Failure, or its stream cut).
Status receive(StageReader& reader, ImageSink& sink, ControlSender& ctl, bool& upstream) {
  uint64_t nextProgress = kProgressEvery;
  for (;;) {
    auto msg = reader.next();
    if (!msg) {
      upstream = true;
      return fail(std::move(msg).error());
    }
    if (!*msg) {
      upstream = true;
      return failMsg(reader.name() + " at offset " + std::to_string(reader.offset()) +
                     ": stream ends before its End message; nothing was written");
    }
    std::string where = reader.name() + " at offset " + std::to_string(reader.offset());
    // Fields are decoded as they are touched; a malformed one throws.
    Result<bool> done = false;
    try {
      if ((*msg)->isHello()) {
        CRPIPE_TRY(checkHello((*msg)->getHello(), where));
        continue;
      }
      if ((*msg)->isFailure()) {
        upstream = true;
        return failMsg(std::string("upstream stage failed: ") +
                       (*msg)->getFailure().getMessage().cStr());
      }
      done = sink.consume(**msg, where, reader);
    } catch (const kj::Exception& e) {
      return failMsg(where + ": " + e.getDescription().cStr());
    }
    if (!done) {
      return fail(std::move(done).error());
    }
    if (*done) {
      return {};
    }
    if (reader.offset() >= nextProgress) {
      ctl.progress("write", reader.offset(), 0, "bytes of stream received");
      nextProgress = reader.offset() + kProgressEvery;
    }
  }
}

}  // namespace

namespace {

Status writeImages(const WriteOptions& opts, ControlSender& ctl, Log& log, OpenEndpoint& in,
                   bool& upstream) {
  auto part = PartialDir::create(opts.dir);
  if (!part) {
    return fail(std::move(part).error());
  }
  log.debug("writing images into %s", part->path().c_str());
  StageReader reader(in.fd, in.name);
  ImageSink sink(part->fd());
  // Two readers, one per core of the machines crpipe is built for, each with a buffer of
  // its own; the copies into one image go to disjoint ranges of its file. Declared after
  // the sink: on failure the queued copies are dropped and the readers joined before the
  // files they write to close.
  std::optional<PageCopier> copier;
  if (opts.pageRefs) {
    copier.emplace(2);
    sink.readPagesWith(&*copier);
  }
  CRPIPE_TRY(receive(reader, sink, ctl, upstream));
  CRPIPE_TRY(part->commit(sink.names()));
  log.info("committed %u images (%lu bytes) into %s", sink.imagesWritten(),
           static_cast<unsigned long>(sink.bytesWritten()), opts.dir.c_str());
  ctl.progress("write", reader.offset(), reader.offset(), "committed");
  ctl.committed(opts.dir, sink.imagesWritten(), sink.bytesWritten());
  return {};
}

}  // namespace

Status runWrite(const WriteOptions& opts, ControlSender& ctl, Log& log) {
  auto in = openInput(opts.in);
  if (!in) {
    ctl.failure(in.error());
    return fail(std::move(in).error());
  }
  bool upstream = false;
  Status st = writeImages(opts, ctl, log, *in, upstream);
  if (!st) {
    // Said while the stream is still open: a collector that then finds its stream broken
    // fails after this, and the coordinator reports this failure as the cause.
    ctl.failure(st.error(), upstream);
  }
  return st;
}

}  // namespace crpipe
