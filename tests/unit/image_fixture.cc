#include "tests/unit/image_fixture.h"

#include <fcntl.h>

#include "common/image_format.h"
#include "common/unique_fd.h"
#include "protos/fdinfo.pb.h"
#include "protos/inventory.pb.h"
#include "protos/pstree.pb.h"

namespace crpipe::testing {

namespace {

Status writeImage(int dirFd, const std::string& name,
                  std::initializer_list<std::pair<const google::protobuf::MessageLite*,
                                                  std::string>> entries) {
  auto kind = imageKindForFile(name);
  if (!kind) {
    return failMsg("no kind for " + name);
  }
  auto w = ImageWriter::create(dirFd, name, kind->headMagic, kind->magic);
  if (!w) {
    return fail(std::move(w).error());
  }
  for (const auto& [msg, trailing] : entries) {
    CRPIPE_TRY(w->writeEntry(msg->SerializeAsString()));
    if (!trailing.empty()) {
      CRPIPE_TRY(w->writeRaw(trailing));
    }
  }
  return w->finish();
}

images::FownEntry noOwner() {
  images::FownEntry f;
  f.set_uid(0);
  f.set_euid(0);
  f.set_signum(0);
  f.set_pid_type(0);
  f.set_pid(0);
  return f;
}

images::FileEntry unixFile(uint32_t id, uint32_t ino, uint32_t peer, std::string name) {
  images::FileEntry f;
  f.set_type(images::UNIXSK);
  f.set_id(id);
  auto* u = f.mutable_usk();
  u->set_id(id);
  u->set_ino(ino);
  u->set_type(1);   // SOCK_STREAM
  u->set_state(1);  // TCP_ESTABLISHED
  u->set_flags(02);
  u->set_uflags(0);
  u->set_backlog(0);
  u->set_peer(peer);
  *u->mutable_fown() = noOwner();
  auto* o = u->mutable_opts();
  o->set_so_sndbuf(212992);
  o->set_so_rcvbuf(212992);
  o->set_so_snd_tmo_sec(0);
  o->set_so_snd_tmo_usec(0);
  o->set_so_rcv_tmo_sec(0);
  o->set_so_rcv_tmo_usec(0);
  u->set_name(std::move(name));
  u->set_shutdown(images::NONE);
  u->mutable_crpipe()->set_peek_off(-1);
  return f;
}

images::FdinfoEntry fd(uint32_t id, uint32_t num, images::FdTypes type, uint32_t flags = 0) {
  images::FdinfoEntry e;
  e.set_id(id);
  e.set_flags(flags);
  e.set_type(type);
  e.set_fd(num);
  return e;
}

}  // namespace

Status writeSampleImages(int dirFd) {
  images::InventoryEntry inv;
  inv.set_img_version(kImagesVersion);
  inv.set_fdinfo_per_id(false);
  inv.mutable_crpipe()->set_root_pid(100);
  inv.mutable_crpipe()->set_tool_version("test");
  CRPIPE_TRY(writeImage(dirFd, "inventory.img", {{&inv, ""}}));

  images::PstreeEntry p1, p2;
  p1.set_pid(100);
  p1.set_ppid(1);
  p1.set_pgid(100);
  p1.set_sid(100);
  p1.add_threads(100);
  p2.set_pid(101);
  p2.set_ppid(100);
  p2.set_pgid(100);
  p2.set_sid(100);
  p2.add_threads(101);
  p2.add_threads(102);
  CRPIPE_TRY(writeImage(dirFd, "pstree.img", {{&p1, ""}, {&p2, ""}}));

  images::FileEntry reg;
  reg.set_type(images::REG);
  reg.set_id(1);
  auto* r = reg.mutable_reg();
  r->set_id(1);
  r->set_flags(02);
  r->set_pos(0);
  *r->mutable_fown() = noOwner();
  r->set_name("/dev/null");
  images::FileEntry sk1 = unixFile(2, 4711, 4712, std::string("\0abc\0d", 6));
  images::FileEntry pipe;
  pipe.set_type(images::PIPE);
  pipe.set_id(3);
  pipe.mutable_pipe()->set_id(3);
  pipe.mutable_pipe()->set_pipe_id(9000);
  pipe.mutable_pipe()->set_flags(0);
  *pipe.mutable_pipe()->mutable_fown() = noOwner();
  images::FileEntry sk2 = unixFile(4, 4712, 4711, "");
  CRPIPE_TRY(
      writeImage(dirFd, "files.img", {{&reg, ""}, {&sk1, ""}, {&pipe, ""}, {&sk2, ""}}));

  auto f0 = fd(1, 0, images::REG);
  auto f3 = fd(2, 3, images::UNIXSK, 1);
  auto f4 = fd(3, 4, images::PIPE);
  CRPIPE_TRY(writeImage(dirFd, "fdinfo-100.img", {{&f0, ""}, {&f3, ""}, {&f4, ""}}));
  auto g3 = fd(4, 3, images::UNIXSK);
  CRPIPE_TRY(writeImage(dirFd, "fdinfo-101.img", {{&g3, ""}}));

  images::PipeDataEntry pd;
  pd.set_pipe_id(9000);
  pd.set_bytes(5);
  CRPIPE_TRY(writeImage(dirFd, "pipes-data.img", {{&pd, "hello"}}));

  images::SkPacketEntry q1, q2;
  q1.set_id_for(4);
  q1.set_length(3);
  q2.set_id_for(4);
  q2.set_length(4);
  CRPIPE_TRY(writeImage(dirFd, "sk-queues.img", {{&q1, "abc"}, {&q2, std::string("\x00\x01\xfe\xff", 4)}}));
  return {};
}

std::string slurp(int dirFd, const std::string& name) {
  UniqueFd f(::openat(dirFd, name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!f.valid()) {
    return "<missing>";
  }
  auto s = readAll(f.get());
  return s ? *s : "<unreadable>";
}

}  // namespace crpipe::testing
