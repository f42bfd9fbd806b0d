#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/image_stream.h"
#include "common/stage_stream.h"
#include "protos/inventory.pb.h"
#include "serializer/commands.h"
#include "serializer/endpoint.h"

namespace crpipe {

namespace {

// The dumped tree's root as the inventory records it (0 when it does not say).
int32_t rootPidOf(int dirFd) {
  auto inv = ImageFile::load(dirFd, "inventory.img");
  if (!inv || inv->pieces().empty()) {
    return 0;
  }
  images::InventoryEntry e;
  const auto& p = inv->pieces().front();
  if (!e.ParseFromArray(p.data.data(), static_cast<int>(p.data.size()))) {
    return 0;
  }
  return static_cast<int32_t>(e.crpipe().root_pid());
}

}  // namespace

Status runRead(const ReadOptions& opts, Log& log) {
  UniqueFd dir(::open(opts.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    return failSys("open image directory " + opts.dir);
  }
  auto out = openOutput(opts.out);
  if (!out) {
    return fail(std::move(out).error());
  }
  {
    StageWriter writer(out->fd);
    capnp::MallocMessageBuilder mb;
    auto h = mb.initRoot<proto::Message>().initHello();
    h.setRole(proto::Hello::Role::SERIALIZER);
    h.setProtocolVersion(proto::PROTOCOL_VERSION);
    h.setToolVersion(CRPIPE_VERSION);
    h.setRootPid(rootPidOf(dir.get()));
    CRPIPE_TRY_CTX(writer.write(mb), out->name);
    ImageEmitter emitter(writer);
    CRPIPE_TRY(emitImageDirectory(dir.get(), opts.dir, emitter,
                                  {.skipRawImages = opts.noPages, .dataRefs = opts.dataRefs}));
    CRPIPE_TRY_CTX(writer.flush(), out->name);
    log.info("%s: %lu entries, %lu raw bytes -> %s", opts.dir.c_str(),
             static_cast<unsigned long>(emitter.entries()),
             static_cast<unsigned long>(emitter.rawBytes()), out->name.c_str());
  }
  struct stat st {};
  if (::fstat(out->fd, &st) == 0 && S_ISREG(st.st_mode) && ::fsync(out->fd) < 0) {
    return failSys("fsync " + out->name);
  }
  return {};
}

}  // namespace crpipe
