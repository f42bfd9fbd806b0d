#include "common/control_sender.h"

namespace crpipe {

ControlSender::ControlSender(int fd, Log& log) : log_(log) {
  if (fd >= 0) {
    writer_ = std::make_unique<StageWriter>(fd);
  }
}

ControlSender::~ControlSender() = default;

void ControlSender::send(capnp::MessageBuilder& mb) {
  if (!writer_) {
    return;
  }
  // Flush every message: the coordinator acts on each as it arrives.
  auto st = writer_->write(mb);
  if (st) {
    st = writer_->flush();
  }
  if (!st) {
    log_.warn("control channel: %s", st.error().str().c_str());
    writer_.reset();
  }
}

void ControlSender::hello(proto::Hello::Role role, int32_t rootPid) {
  capnp::MallocMessageBuilder mb;
  auto h = mb.initRoot<proto::Message>().initHello();
  h.setRole(role);
  h.setRootPid(rootPid);
  h.setProtocolVersion(proto::PROTOCOL_VERSION);
  h.setToolVersion(CRPIPE_VERSION);
  send(mb);
}

void ControlSender::progress(const std::string& step, uint64_t done, uint64_t total,
                             const std::string& detail) {
  capnp::MallocMessageBuilder mb;
  auto p = mb.initRoot<proto::Message>().initProgress();
  p.setStep(step);
  p.setDone(done);
  p.setTotal(total);
  p.setDetail(detail);
  send(mb);
}

void ControlSender::failure(const Error& err, bool upstream) {
  capnp::MallocMessageBuilder mb;
  auto f = mb.initRoot<proto::Message>().initFailure();
  f.setMessage(err.str());
  f.setErrnoValue(err.err());
  f.setUpstream(upstream);
  send(mb);
}

void ControlSender::committed(const std::string& dir, uint32_t images, uint64_t bytes) {
  capnp::MallocMessageBuilder mb;
  auto c = mb.initRoot<proto::Message>().initCommitted();
  c.setDirectory(dir);
  c.setImages(images);
  c.setBytes(bytes);
  send(mb);
}

}  // namespace crpipe
