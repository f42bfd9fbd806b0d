#include "collector/task/kobj_ids.h"

#include <linux/kcmp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace crpipe::collector::task {

namespace {

constexpr int kKinds[4] = {KCMP_VM, KCMP_FILES, KCMP_FS, KCMP_SIGHAND};
constexpr const char* kNames[4] = {"KCMP_VM", "KCMP_FILES", "KCMP_FS", "KCMP_SIGHAND"};

Result<uint32_t> nsInode(pid_t pid, const char* ns) {
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) {
      return 0u;  // a namespace kind this kernel does not have
    }
    return fail(Error::sys("stat " + path));
  }
  return static_cast<uint32_t>(st.st_ino);
}

}  // namespace

Result<uint32_t> KobjIds::idOf(int k, pid_t pid) {
  for (const auto& o : seen_[k]) {
    long r = ::syscall(SYS_kcmp, o.member, pid, kKinds[k], 0, 0);
    if (r == 0) {
      return o.id;
    }
    if (r < 0) {
      return fail(Error::sys("pid " + std::to_string(pid) + ": kcmp " + kNames[k]));
    }
  }
  uint32_t id = next_[k]++;
  seen_[k].push_back({pid, id});
  return id;
}

Result<images::TaskKobjIdsEntry> KobjIds::idsFor(pid_t pid) {
  images::TaskKobjIdsEntry e;
  uint32_t ids[4];
  for (int k = 0; k < 4; ++k) {
    auto id = idOf(k, pid);
    if (!id) {
      return fail(std::move(id).error());
    }
    ids[k] = *id;
  }
  e.set_vm_id(ids[0]);
  e.set_files_id(ids[1]);
  e.set_fs_id(ids[2]);
  e.set_sighand_id(ids[3]);
  struct NsField {
    const char* name;
    void (images::TaskKobjIdsEntry::*set)(uint32_t);
  };
  const NsField fields[] = {
      {"pid", &images::TaskKobjIdsEntry::set_pid_ns_id},
      {"net", &images::TaskKobjIdsEntry::set_net_ns_id},
      {"ipc", &images::TaskKobjIdsEntry::set_ipc_ns_id},
      {"uts", &images::TaskKobjIdsEntry::set_uts_ns_id},
      {"mnt", &images::TaskKobjIdsEntry::set_mnt_ns_id},
      {"user", &images::TaskKobjIdsEntry::set_user_ns_id},
      {"cgroup", &images::TaskKobjIdsEntry::set_cgroup_ns_id},
      {"time", &images::TaskKobjIdsEntry::set_time_ns_id},
  };
  for (const auto& f : fields) {
    auto ino = nsInode(pid, f.name);
    if (!ino) {
      return fail(std::move(ino).error());
    }
    if (*ino != 0) {
      (e.*f.set)(*ino);
    }
  }
  return e;
}

}  // namespace crpipe::collector::task
