#include "coordinator/control_channel.h"

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "common/stage_stream.h"
#include "coordinator/uv_loop.h"

namespace crpipe {

namespace {

constexpr size_t kReadChunk = 64 * 1024;
// A control message is small; anything near this is a broken or hostile peer.
constexpr size_t kMaxMessageWords = (16u << 20) / sizeof(capnp::word);

struct WriteReq {
  uv_write_t req{};
  kj::Array<capnp::word> words;
};

// A message written from its own segments: the stream framing's segment table, then each
// segment, as one uv_write of several buffers.
struct SegmentsWriteReq {
  uv_write_t req{};
  std::unique_ptr<capnp::MessageBuilder> msg;
  std::vector<uint32_t> table;
  std::vector<uv_buf_t> bufs;
};

}  // namespace

struct ControlChannel::Handle {
  uv_pipe_t pipe{};
  ControlChannel* owner = nullptr;
  char chunk[kReadChunk];
};

Result<std::unique_ptr<ControlChannel>> ControlChannel::open(uv_loop_t* loop, UniqueFd fd,
                                                             std::string name, Callbacks cb) {
  std::unique_ptr<ControlChannel> ch(new ControlChannel());
  ch->name_ = std::move(name);
  ch->cb_ = std::move(cb);
  auto* h = new Handle();
  h->owner = ch.get();
  uv_pipe_init(loop, &h->pipe, 0);
  ch->handle_ = h;
  int rc = uv_pipe_open(&h->pipe, fd.get());
  if (rc < 0) {
    return fail(uvError(rc, "control channel " + ch->name_));
  }
  (void)fd.release();  // the pipe handle owns it now and closes it in uv_close
  rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&h->pipe), &ControlChannel::onAlloc,
                     &ControlChannel::onRead);
  if (rc < 0) {
    return fail(uvError(rc, "read control channel " + ch->name_));
  }
  ch->reading_ = true;
  return ch;
}

ControlChannel::~ControlChannel() { close(); }

void ControlChannel::close() {
  reading_ = false;
  if (handle_ == nullptr) {
    return;
  }
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->pipe),
           [](uv_handle_t* h) { delete reinterpret_cast<Handle*>(h); });
  handle_ = nullptr;
}

void ControlChannel::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* hh = reinterpret_cast<Handle*>(h);
  *buf = uv_buf_init(hh->chunk, sizeof(hh->chunk));
}

void ControlChannel::onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* self = reinterpret_cast<Handle*>(s)->owner;
  if (self == nullptr || n == 0) {
    return;
  }
  if (n < 0) {
    if (n == UV_EOF || n == UV_ECONNRESET) {
      if (self->buf_.empty()) {
        self->finish(nullptr);
      } else {
        Error e = Error::plain(self->name_ + " at offset " + std::to_string(self->consumed_) +
                               ": channel ends inside a message");
        self->finish(&e);
      }
      return;
    }
    Error e = uvError(static_cast<int>(n), "read " + self->name_);
    self->finish(&e);
    return;
  }
  self->buf_.append(buf->base, static_cast<size_t>(n));
  self->parse();
}

void ControlChannel::parse() {
  while (reading_ && buf_.size() >= sizeof(capnp::word)) {
    // Copy into word-aligned memory: Cap'n Proto reads words in place.
    size_t have = buf_.size() / sizeof(capnp::word);
    auto words = kj::heapArray<capnp::word>(std::min(have, kMaxMessageWords + 1));
    std::memcpy(words.begin(), buf_.data(), words.size() * sizeof(capnp::word));
    size_t need = capnp::expectedSizeInWordsFromPrefix(words.asPtr());
    if (need > kMaxMessageWords) {
      Error e = Error::plain(name_ + " at offset " + std::to_string(consumed_) + ": message of " +
                             std::to_string(need * 8) + " bytes is over the limit");
      finish(&e);
      return;
    }
    if (need > have) {
      return;  // wait for the rest
    }
    try {
      capnp::FlatArrayMessageReader reader(words.slice(0, need), stageReaderOptions());
      auto msg = reader.getRoot<proto::Message>();
      (void)msg.which();
      buf_.erase(0, need * sizeof(capnp::word));
      consumed_ += need * sizeof(capnp::word);
      if (cb_.onMessage) {
        cb_.onMessage(msg);
      }
    } catch (const kj::Exception& ex) {
      Error e = Error::plain(name_ + " at offset " + std::to_string(consumed_) + ": " +
                             ex.getDescription().cStr());
      finish(&e);
      return;
    }
  }
}

void ControlChannel::finish(const Error* err) {
  if (!reading_) {
    return;
  }
  reading_ = false;
  if (handle_ != nullptr) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&handle_->pipe));
  }
  if (cb_.onClosed) {
    cb_.onClosed(err);
  }
}

Status ControlChannel::send(capnp::MessageBuilder& msg) {
  if (handle_ == nullptr || writeShut_) {
    return failMsg(name_ + ": channel already closed for writing");
  }
  auto* req = new WriteReq();
  req->words = capnp::messageToFlatArray(msg);
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(req->words.begin()),
                           static_cast<unsigned>(req->words.size() * sizeof(capnp::word)));
  int rc = uv_write(&req->req, reinterpret_cast<uv_stream_t*>(&handle_->pipe), &b, 1,
                    [](uv_write_t* r, int) { delete reinterpret_cast<WriteReq*>(r); });
  if (rc < 0) {
    delete req;
    return fail(uvError(rc, "write " + name_));
  }
  return {};
}

Status ControlChannel::send(std::unique_ptr<capnp::MessageBuilder> msg) {
  if (handle_ == nullptr || writeShut_) {
    return failMsg(name_ + ": channel already closed for writing");
  }
  auto req = std::make_unique<SegmentsWriteReq>();
  req->msg = std::move(msg);
  auto segments = req->msg->getSegmentsForOutput();
  // Segment count - 1, each segment's size in words, padded to a whole word.
  req->table.push_back(static_cast<uint32_t>(segments.size() - 1));
  for (auto seg : segments) {
    req->table.push_back(static_cast<uint32_t>(seg.size()));
  }
  if (req->table.size() % 2 != 0) {
    req->table.push_back(0);
  }
  req->bufs.push_back(uv_buf_init(reinterpret_cast<char*>(req->table.data()),
                                  static_cast<unsigned>(req->table.size() * sizeof(uint32_t))));
  for (auto seg : segments) {
    req->bufs.push_back(uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(seg.begin())),
                                    static_cast<unsigned>(seg.size() * sizeof(capnp::word))));
  }
  SegmentsWriteReq* raw = req.get();
  int rc = uv_write(&raw->req, reinterpret_cast<uv_stream_t*>(&handle_->pipe), raw->bufs.data(),
                    static_cast<unsigned>(raw->bufs.size()),
                    [](uv_write_t* r, int) { delete reinterpret_cast<SegmentsWriteReq*>(r); });
  if (rc < 0) {
    return fail(uvError(rc, "write " + name_));
  }
  (void)req.release();  // the write callback deletes it
  return {};
}

void ControlChannel::shutdownWrite() {
  if (handle_ == nullptr || writeShut_) {
    return;
  }
  writeShut_ = true;
  auto* req = new uv_shutdown_t();
  int rc = uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&handle_->pipe),
                       [](uv_shutdown_t* r, int) { delete r; });
  if (rc < 0) {
    delete req;
  }
}

}  // namespace crpipe
