#include "common/stage_stream.h"

#include "common/image_format.h"
#include "common/restore_phase.h"

#include <fcntl.h>
#include <unistd.h>
#include <kj/exception.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>

#include <cstdio>

namespace crpipe {

// Counts the bytes the message reader takes so that errors can name an offset.
class StageReader::Counting : public kj::InputStream {
 public:
  explicit Counting(kj::BufferedInputStream& in) : in_(in) {}
  size_t tryRead(void* buf, size_t minBytes, size_t maxBytes) override {
    size_t n = in_.tryRead(buf, minBytes, maxBytes);
    count_ += n;
    return n;
  }
  void skip(size_t bytes) override {
    in_.skip(bytes);
    count_ += bytes;
  }
  // Bytes taken from the fd past the buffer (splice).
  void advance(uint64_t bytes) { count_ += bytes; }
  // What the buffer holds already, without reading the fd.
  kj::ArrayPtr<const kj::byte> buffered() { return in_.tryGetReadBuffer(); }
  uint64_t count() const { return count_; }

 private:
  kj::BufferedInputStream& in_;
  uint64_t count_ = 0;
};

capnp::ReaderOptions stageReaderOptions() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = (64ull << 20) / 8;  // 64 MiB per message
  o.nestingLimit = 16;
  return o;
}

StageReader::StageReader(int fd, std::string name)
    : name_(std::move(name)),
      raw_(std::make_unique<kj::FdInputStream>(fd)),
      buffered_(std::make_unique<kj::BufferedInputStreamWrapper>(*raw_)),
      counting_(std::make_unique<Counting>(*buffered_)),
      fd_(fd) {
  struct stat st {};
  pipeIn_ = ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

namespace {

// InputStreamMessageReader reads segments after the first lazily, and its destructor
// skips whatever was not read yet; on a truncated stream that skip throws. Destroying it
// through unique_ptr (noexcept) would then terminate the process, so destroy it here,
// where the exception can be caught; by then the error has been reported already.
void dropReader(std::unique_ptr<capnp::InputStreamMessageReader>& r) {
  capnp::InputStreamMessageReader* p = r.release();
  try {
    delete p;
  } catch (const kj::Exception&) {
  }
}

}  // namespace

StageReader::~StageReader() { dropReader(current_); }

std::unique_ptr<capnp::MessageReader> StageReader::takeLast() {
  // next() read every segment already, so destroying it later never skips (or throws).
  return std::move(current_);
}

Result<std::optional<proto::Message::Reader>> StageReader::next() {
  dropReader(current_);
  if (payloadLeft_ > 0) {
    // The caller did not want the payload (a decoder, a reader that skips pages).
    try {
      counting_->skip(payloadLeft_);
    } catch (const kj::Exception&) {
      return failMsg(name_ + " at offset " + std::to_string(offset_) +
                     ": stream ends inside the payload of this message");
    }
    payloadLeft_ = 0;
  }
  offset_ = counting_->count();
  try {
    if (buffered_->tryGetReadBuffer().size() == 0) {
      return std::optional<proto::Message::Reader>();
    }
    current_ = std::make_unique<capnp::InputStreamMessageReader>(*counting_,
                                                                 stageReaderOptions());
    // Read every segment now, so that a stream cut inside a later segment is refused
    // here, at this message's offset, rather than when a field is touched.
    for (uint32_t seg = 0; current_->getSegment(seg).size() > 0; ++seg) {
    }
    auto msg = current_->getRoot<proto::Message>();
    // Touch the union tag so that a malformed root is caught here, not later.
    if (msg.which() == proto::Message::PAGES) {
      uint64_t len = msg.getPages().getLength();
      if (len > kMaxPagesPayload) {
        dropReader(current_);
        return failMsg(name_ + " at offset " + std::to_string(offset_) + ": a pages message of " +
                       std::to_string(len) + " bytes, more than the " +
                       std::to_string(kMaxPagesPayload) + " a reader takes");
      }
      payloadLeft_ = len;
    }
    return std::optional<proto::Message::Reader>(msg);
  } catch (const kj::Exception& e) {
    dropReader(current_);
    std::string what = e.getDescription().cStr();
    if (what.find("Premature EOF") != std::string::npos) {
      what = "stream ends inside a message";
    }
    return failMsg(name_ + " at offset " + std::to_string(offset_) + ": " + what);
  }
}

Status StageReader::readPayload(void* dst, size_t len) {
  if (len > payloadLeft_) {
    return failMsg(name_ + " at offset " + std::to_string(offset_) + ": " +
                   std::to_string(len) + " payload bytes wanted, " +
                   std::to_string(payloadLeft_) + " left in this message");
  }
  uint64_t at = counting_->count();
  size_t got = 0;
  try {
    // kj's buffered stream hands over what it read ahead, then reads the rest from the fd
    // straight into dst.
    got = counting_->tryRead(dst, len, len);
  } catch (const kj::Exception& e) {
    payloadLeft_ = 0;
    std::string what = e.getDescription().cStr();
    if (what.find("Premature EOF") != std::string::npos) {
      what = "stream ends inside the payload";
    }
    return failMsg(name_ + " at offset " + std::to_string(at) + ": " + what +
                   " of the message at offset " + std::to_string(offset_));
  }
  if (got < len) {
    payloadLeft_ = 0;  // nothing more to skip: the stream is over
    return failMsg(name_ + " at offset " + std::to_string(at + got) +
                   ": stream ends inside the payload of the message at offset " +
                   std::to_string(offset_) + " (" + std::to_string(len - got) +
                   " bytes missing)");
  }
  payloadLeft_ -= len;
  return {};
}

void widenStreamBuffer(int fd, int bytes) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    return;
  }
  if (S_ISSOCK(st.st_mode)) {
    // Past net.core.wmem_max only with CAP_NET_ADMIN (SO_SNDBUFFORCE).
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) < 0) {
      (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    }
  } else if (S_ISFIFO(st.st_mode)) {
    // Past /proc/sys/fs/pipe-max-size (1 MiB) only with CAP_SYS_RESOURCE; never smaller
    // than it already is.
    const int now = ::fcntl(fd, F_GETPIPE_SZ);
    if (now < bytes && ::fcntl(fd, F_SETPIPE_SZ, bytes) < 0 && now < (1 << 20)) {
      (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
    }
  }
}

Status StageReader::splicePayload(int outFd, size_t len, const std::string& outName) {
  if (len > payloadLeft_) {
    return failMsg(name_ + " at offset " + std::to_string(offset_) + ": " +
                   std::to_string(len) + " payload bytes wanted, " +
                   std::to_string(payloadLeft_) + " left in this message");
  }
  auto cut = [&](uint64_t at, const std::string& what) {
    payloadLeft_ = 0;
    return failMsg(name_ + " at offset " + std::to_string(at) + ": " + what +
                   " of the message at offset " + std::to_string(offset_) + " (" +
                   std::to_string(len) + " bytes missing)");
  };
  // Bytes kj read ahead come first, written from its buffer. tryGetReadBuffer() reads the
  // fd when the buffer is empty: those bytes are written from it too.
  while (len > 0 && !noSplice_) {
    kj::ArrayPtr<const kj::byte> head;
    try {
      head = counting_->buffered();
    } catch (const kj::Exception& e) {
      return cut(counting_->count(), e.getDescription().cStr());
    }
    if (head.size() == 0) {
      return cut(counting_->count(), "stream ends inside the payload");
    }
    size_t n = std::min(head.size(), len);
    CRPIPE_TRY_CTX(writeAll(outFd, std::string_view(reinterpret_cast<const char*>(head.begin()), n)),
                   "write " + outName);
    counting_->skip(n);
    payloadLeft_ -= n;
    len -= n;
    if (len == 0) {
      return {};
    }
    // The buffer is empty now: the rest comes straight from the fd.
    if (!pipeRead_.valid()) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) < 0) {
        return failSys("pipe for splicing " + outName);
      }
      pipeRead_.reset(p[0]);
      pipeWrite_.reset(p[1]);
      (void)::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    }
    break;
  }
  // A pipe (the dump's data channel) splices straight into the file: the one copy of the
  // pages the collector lent to it.
  while (len > 0 && pipeIn_ && !noSplice_) {
    uint64_t at = counting_->count();
    ssize_t n = ::splice(fd_, nullptr, outFd, nullptr, std::min<size_t>(len, 8 << 20),
                         SPLICE_F_MOVE);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EINVAL) {
      pipeIn_ = false;  // the file cannot take a splice: through the pipe and buffer below
      break;
    }
    if (n < 0) {
      return fail(Error::sys(name_ + " at offset " + std::to_string(at) +
                             ": splice the payload of the message at offset " +
                             std::to_string(offset_) + " into " + outName));
    }
    if (n == 0) {
      return cut(at, "stream ends inside the payload");
    }
    counting_->advance(static_cast<uint64_t>(n));
    payloadLeft_ -= static_cast<uint64_t>(n);
    len -= static_cast<size_t>(n);
  }
  while (len > 0 && !noSplice_) {
    uint64_t at = counting_->count();
    ssize_t in = ::splice(fd_, nullptr, pipeWrite_.get(), nullptr, std::min<size_t>(len, 1 << 20),
                          SPLICE_F_MOVE);
    if (in < 0 && errno == EINTR) {
      continue;
    }
    if (in < 0 && (errno == EINVAL || errno == ENOSYS)) {
      noSplice_ = true;  // this fd cannot splice: through a buffer below
      break;
    }
    if (in < 0) {
      return fail(Error::sys(name_ + " at offset " + std::to_string(at) +
                             ": splice the payload of the message at offset " +
                             std::to_string(offset_)));
    }
    if (in == 0) {
      return cut(at, "stream ends inside the payload");
    }
    size_t left = static_cast<size_t>(in);
    while (left > 0) {
      ssize_t out = ::splice(pipeRead_.get(), nullptr, outFd, nullptr, left, SPLICE_F_MOVE);
      if (out < 0 && errno == EINTR) {
        continue;
      }
      if (out < 0 && errno == EINVAL) {
        // A file system without splice_write: what is in the pipe goes through a buffer.
        bounce_.resize(1 << 20);
        ssize_t r = ::read(pipeRead_.get(), bounce_.data(), std::min(left, bounce_.size()));
        if (r <= 0) {
          return fail(Error::sys(r < 0 ? errno : EIO, "read the splice pipe for " + outName));
        }
        CRPIPE_TRY_CTX(writeAll(outFd, std::string_view(bounce_.data(), static_cast<size_t>(r))),
                       "write " + outName);
        left -= static_cast<size_t>(r);
        continue;
      }
      if (out <= 0) {
        return fail(Error::sys(out < 0 ? errno : EIO, "write " + outName + " (splice)"));
      }
      left -= static_cast<size_t>(out);
    }
    counting_->advance(static_cast<uint64_t>(in));
    payloadLeft_ -= static_cast<uint64_t>(in);
    len -= static_cast<size_t>(in);
  }
  // Through a buffer: a stream that cannot splice (a file system without splice_read).
  constexpr size_t kBounce = 1 << 20;
  while (len > 0) {
    size_t n = std::min(len, kBounce);
    bounce_.resize(kBounce);
    CRPIPE_TRY(readPayload(bounce_.data(), n));
    CRPIPE_TRY_CTX(writeAll(outFd, std::string_view(bounce_.data(), n)), "write " + outName);
    len -= n;
  }
  return {};
}

StageWriter::StageWriter(int fd)
    : raw_(std::make_unique<kj::FdOutputStream>(fd)),
      buffered_(std::make_unique<kj::BufferedOutputStreamWrapper>(*raw_)) {
  struct stat st {};
  pipe_ = ::fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
  if (pipe_) {
    int size = ::fcntl(fd, F_GETPIPE_SZ);
    pipeCapacity_ = size > 0 ? static_cast<size_t>(size) : 0;
  }
}

StageWriter::~StageWriter() {
  // kj's buffered stream flushes again in its own destructor, which may throw (noexcept
  // false) when the reader went away and bytes are still buffered; destroyed as a member
  // of this noexcept destructor that would terminate the process. So destroy it here,
  // where the exception is caught: whoever cared has already seen write() fail.
  kj::BufferedOutputStreamWrapper* b = buffered_.release();
  try {
    b->flush();
  } catch (const kj::Exception&) {
  }
  try {
    delete b;
  } catch (const kj::Exception&) {
  }
}

Status StageWriter::write(capnp::MessageBuilder& msg) {
  try {
    bytes_ += capnp::computeSerializedSizeInWords(msg) * 8;
    capnp::writeMessage(*buffered_, msg);
    return {};
  } catch (const kj::Exception& e) {
    return failMsg(std::string("write stage message: ") + e.getDescription().cStr());
  }
}

Status StageWriter::writeWithPayload(capnp::MessageBuilder& msg, std::string_view payload) {
  CRPIPE_TRY(write(msg));
  try {
    // A write larger than kj's buffer flushes it and goes to the fd from `payload` itself.
    buffered_->write(payload.data(), payload.size());
    bytes_ += payload.size();
    return {};
  } catch (const kj::Exception& e) {
    return failMsg(std::string("write stage payload: ") + e.getDescription().cStr());
  }
}

Status StageWriter::writeWithPayloadByReference(capnp::MessageBuilder& msg,
                                                std::string_view payload) {
  if (!pipe_) {
    return writeWithPayload(msg, payload);
  }
  CRPIPE_TRY(write(msg));
  CRPIPE_TRY(flush());
  // The pipe takes references to the pages: the reader (the serializer's splice into the
  // image file) copies them once, where a write() would have copied them into the pipe
  // first.
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  while (iov.iov_len > 0) {
    ssize_t n = ::vmsplice(raw_->getFd(), &iov, 1, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return failSys("vmsplice of " + std::to_string(iov.iov_len) + " payload bytes");
    }
    iov.iov_base = static_cast<char*>(iov.iov_base) + n;
    iov.iov_len -= static_cast<size_t>(n);
    bytes_ += static_cast<uint64_t>(n);
  }
  return {};
}

Result<uint64_t> StageWriter::consumedUpTo() {
  if (!pipe_) {
    return bytes_;
  }
  CRPIPE_TRY(flush());
  int unread = 0;
  if (::ioctl(raw_->getFd(), FIONREAD, &unread) < 0) {
    return failSys("FIONREAD of the stream pipe");
  }
  return bytes_ - std::min<uint64_t>(bytes_, static_cast<uint64_t>(std::max(unread, 0)));
}

Status StageWriter::flush() {
  try {
    buffered_->flush();
    return {};
  } catch (const kj::Exception& e) {
    return failMsg(std::string("flush stage stream: ") + e.getDescription().cStr());
  }
}

std::string describeMessage(proto::Message::Reader msg) {
  char buf[512];
  switch (msg.which()) {
    case proto::Message::HELLO: {
      auto h = msg.getHello();
      snprintf(buf, sizeof(buf), "hello role=%u protocol=%u tool=%s root=%d",
               static_cast<unsigned>(h.getRole()), h.getProtocolVersion(),
               h.getToolVersion().cStr(), h.getRootPid());
      return buf;
    }
    case proto::Message::IMAGE_OPEN: {
      auto o = msg.getImageOpen();
      snprintf(buf, sizeof(buf), "image-open #%u %s head=0x%08x magic=0x%08x", o.getImage(),
               o.getName().cStr(), o.getHeadMagic(), o.getMagic());
      return buf;
    }
    case proto::Message::ENTRY: {
      auto e = msg.getEntry();
      snprintf(buf, sizeof(buf), "entry #%u %zu bytes", e.getImage(), e.getPayload().size());
      return buf;
    }
    case proto::Message::CHUNK: {
      auto c = msg.getChunk();
      snprintf(buf, sizeof(buf), "chunk #%u %u entries %lu raw bytes, %zu bytes%s",
               c.getImage(), c.getEntries(), static_cast<unsigned long>(c.getRawBytes()),
               c.getBytes().size(),
               c.getDataAt().size() > 0
                   ? (", data of " + std::to_string(c.getDataAt().size()) + " entries left in the file").c_str()
                   : "");
      return buf;
    }
    case proto::Message::RAW: {
      auto r = msg.getRaw();
      snprintf(buf, sizeof(buf), "raw #%u %zu bytes", r.getImage(), r.getData().size());
      return buf;
    }
    case proto::Message::PAGES: {
      auto p = msg.getPages();
      snprintf(buf, sizeof(buf), "pages #%u %lu bytes", p.getImage(),
               static_cast<unsigned long>(p.getLength()));
      return buf;
    }
    case proto::Message::PAGE_REFS: {
      auto p = msg.getPageRefs();
      uint64_t len = 0;
      for (auto r : p.getRanges()) {
        len += r.getLength();
      }
      snprintf(buf, sizeof(buf), "page-refs #%u pid %d, %u ranges, %lu bytes", p.getImage(),
               p.getPid(), p.getRanges().size(), static_cast<unsigned long>(len));
      return buf;
    }
    case proto::Message::PROGRESS: {
      auto p = msg.getProgress();
      snprintf(buf, sizeof(buf), "progress %s %lu/%lu %s", p.getStep().cStr(),
               static_cast<unsigned long>(p.getDone()), static_cast<unsigned long>(p.getTotal()),
               p.getDetail().cStr());
      return buf;
    }
    case proto::Message::FAILURE: {
      auto f = msg.getFailure();
      snprintf(buf, sizeof(buf), "failure errno=%d %s", f.getErrnoValue(),
               f.getMessage().cStr());
      return buf;
    }
    case proto::Message::END: {
      auto e = msg.getEnd();
      snprintf(buf, sizeof(buf), "end images=%u entries=%lu raw-bytes=%lu", e.getImages(),
               static_cast<unsigned long>(e.getEntries()),
               static_cast<unsigned long>(e.getRawBytes()));
      return buf;
    }
    case proto::Message::COMMITTED: {
      auto c = msg.getCommitted();
      snprintf(buf, sizeof(buf), "committed %s images=%u bytes=%lu", c.getDirectory().cStr(),
               c.getImages(), static_cast<unsigned long>(c.getBytes()));
      return buf;
    }
    case proto::Message::VERDICT:
      return msg.getVerdict().getKill() ? "verdict kill" : "verdict release";
    case proto::Message::TASK_ORDER: {
      auto t = msg.getTaskOrder();
      snprintf(buf, sizeof(buf), "task-order children=%u fds=%u files=%u sends=%u receives=%u",
               t.getChildren().size(), t.getFds().size(), t.getFiles().size(),
               t.getSends().size(), t.getReceives().size());
      return buf;
    }
    case proto::Message::PHASE: {
      auto p = msg.getPhase();
      if (p.getRounds() <= 1) {
        return std::string("phase ") + phaseName(p.getPhase());
      }
      snprintf(buf, sizeof(buf), "phase %s round=%u/%u", phaseName(p.getPhase()), p.getRound() + 1,
               p.getRounds());
      return buf;
    }
    case proto::Message::PHASE_DONE: {
      auto d = msg.getPhaseDone();
      snprintf(buf, sizeof(buf), "phase-done pid=%d %s round=%u", d.getPid(),
               phaseName(d.getPhase()), d.getRound() + 1);
      return buf;
    }
  }
  return "unknown message";
}

}  // namespace crpipe
