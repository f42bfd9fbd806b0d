#include "coordinator/restore_plan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/namespaces.h"
#include "common/unix_name.h"
#include "coordinator/unix_plan.h"
#include "restorer/kinds/registry.h"

namespace crpipe {

namespace {

template <typename Msg>
Result<Msg> parse(const std::string& bytes, const std::string& what) {
  Msg m;
  if (!m.ParseFromString(bytes)) {
    return failMsg(what + ": malformed entry");
  }
  return m;
}

std::string fdWhere(pid_t pid, uint32_t fd) {
  return "pid " + std::to_string(pid) + " fd " + std::to_string(fd);
}

// Unix sockets of another network namespace are made inside it, and socket files of
// another mount namespace are bound inside it: each namespace must still exist. A socket
// file on a mount that is in no namespace the dump recorded is refused (not bound in the
// wrong place).
Status planUnixNamespaces(RestorePlan& plan) {
  std::unordered_map<uint32_t, std::pair<pid_t, int>> holder;  // file id -> (pid, fd)
  for (const auto& t : plan.tasks) {
    for (const auto& fd : t.fds) {
      holder.try_emplace(fd.id(), t.pid, static_cast<int>(fd.fd()));
    }
  }
  struct stat self {};
  if (::stat("/proc/self/ns/net", &self) != 0) {
    return failSys("stat /proc/self/ns/net");
  }
  std::set<int> mounts;
  bool mountsRead = false;
  for (const auto& [id, fe] : plan.files) {
    if (fe.type() != images::UNIXSK || (fe.usk().uflags() & 1) != 0 || fe.usk().ino() == 0 ||
        fe.usk().crpipe().ext_inherit()) {
      continue;  // outside peers, embryos (made by connecting), inherited sockets
    }
    const auto& e = fe.usk();
    auto who = [&holder, &e, id = id]() {
      auto h = holder.find(id);
      return (h != holder.end() ? fdWhere(h->second.first, h->second.second)
                                : std::string("passed in a queued message")) +
             " (unix socket ino " + std::to_string(e.ino()) + ")";
    };
    const uint64_t ns = e.crpipe().netns_ino();
    if (ns != 0 && ns != self.st_ino && !plan.netns.contains(ns)) {
      UniqueFd fd = openNamespaceByInode("net", ns);
      if (!fd.valid()) {
        return failMsg(who() + " belongs to network namespace " + std::to_string(ns) +
                       ", which no longer exists (not in /run/netns, no process in it); "
                       "crpipe does not recreate namespaces");
      }
      plan.netns.emplace(ns, std::move(fd));
    }
    if (e.name().empty() || e.name()[0] == '\0') {
      continue;  // abstract or unbound: no file
    }
    if (const uint64_t mns = e.crpipe().mntns_ino(); mns != 0) {
      if (!plan.mntns.contains(mns)) {
        UniqueFd fd = openNamespaceByInode("mnt", mns);
        if (!fd.valid()) {
          return failMsg(who() + " is bound to '" + printableUnixName(e.name()) + "' in mount namespace " +
                         std::to_string(mns) + ", which no longer exists (no process in "
                         "it); crpipe does not recreate namespaces");
        }
        plan.mntns.emplace(mns, std::move(fd));
      }
      continue;
    }
    if (e.mnt_id() >= 0) {
      if (!mountsRead) {
        auto ids = mountIdsIn("/proc/self/mountinfo");
        if (!ids) {
          return fail(std::move(ids).error());
        }
        mounts = std::move(*ids);
        mountsRead = true;
      }
      if (!mounts.contains(e.mnt_id())) {
        return failMsg(who() + " is bound to '" + printableUnixName(e.name()) + "' on mount id " +
                       std::to_string(e.mnt_id()) + ", which is in neither crpipe's mount "
                       "namespace nor one the dump recorded (unmounted since the dump?)");
      }
    }
  }
  return {};
}

Status planSessions(RestorePlan& plan, const PlanOptions& opts) {
  std::map<pid_t, TaskPlan*> byPid;
  for (auto& t : plan.tasks) {
    byPid[t.pid] = &t;
  }
  TaskPlan& root = plan.tasks.front();
  const pid_t outsideSid = static_cast<pid_t>(root.pstree.sid());
  const pid_t outsidePgid = static_cast<pid_t>(root.pstree.pgid());
  for (auto& t : plan.tasks) {
    pid_t sid = static_cast<pid_t>(t.pstree.sid());
    pid_t pgid = static_cast<pid_t>(t.pstree.pgid());
    t.setsid = sid == t.pid;
    if (!t.setsid && !byPid.contains(sid)) {
      if (!opts.shellJob || sid != outsideSid) {
        return failMsg("pid " + std::to_string(t.pid) + " is in session " + std::to_string(sid) +
                       ", whose leader is not in the dump" +
                       (&t == &root ? "; use --shell-job to restore it into crpipe's session"
                                    : ""));
      }
      sid = opts.callerSid;
    }
    if (pgid != t.pid && !byPid.contains(pgid)) {
      if (!opts.shellJob || pgid != outsidePgid) {
        return failMsg("pid " + std::to_string(t.pid) + " is in process group " +
                       std::to_string(pgid) + ", whose leader is not in the dump" +
                       (&t == &root ? "; use --shell-job to restore it into crpipe's group"
                                    : ""));
      }
      pgid = opts.callerPgid;
    }
    t.sid = sid;
    t.pgid = pgid;
  }
  for (auto& t : plan.tasks) {
    // A task that is not a session leader inherits its session at fork: its parent must
    // be in it by then (parents call setsid() before forking). A session left by the
    // parent later, or a session whose leader is a sibling, needs helper tasks.
    if (!t.setsid && t.ppid != 0 && byPid.at(t.ppid)->sid != t.sid) {
      return failMsg("pid " + std::to_string(t.pid) + " is in session " + std::to_string(t.sid) +
                     " but its parent " + std::to_string(t.ppid) + " is in session " +
                     std::to_string(byPid.at(t.ppid)->sid) +
                     "; restoring such a tree needs helper tasks, not implemented yet");
    }
    auto leader = byPid.find(t.pgid);
    if (leader != byPid.end() && leader->second != &t) {
      if (leader->second->pgid != t.pgid || leader->second->sid != t.sid) {
        return failMsg("pid " + std::to_string(t.pid) + " is in process group " +
                       std::to_string(t.pgid) + " whose leader left it or is in another session;"
                       " restoring that needs helper tasks, not implemented yet");
      }
    }
  }
  return {};
}

}  // namespace

const TaskPlan* RestorePlan::task(pid_t pid) const {
  for (const auto& t : tasks) {
    if (t.pid == pid) {
      return &t;
    }
  }
  return nullptr;
}

// --shell-job: a job of a shell is attached to the shell's terminal through its stdio. The
// terminal the dumped root had on fd 0, 1 or 2 (a /dev/pts/N or /dev/ttyX path) becomes the
// terminal crpipe runs on, wherever the dump made it refer: a job dumped in one terminal
// comes back in the one it is restored from, the way a shell gives its jobs its own.
static Status retargetShellJobTerminal(RestorePlan& plan, const RestoreImages& images,
                                       const PlanOptions& opts) {
  if (!opts.shellJob || opts.callerTerminal.empty()) {
    return {};
  }
  const std::string img = "fdinfo-" + std::to_string(plan.tasks.front().pid) + ".img";
  std::set<std::string> terminals;
  for (const auto& e : images.entries(img)) {
    auto fd = parse<images::FdinfoEntry>(e.payload, img);
    if (!fd) {
      return fail(std::move(fd).error());
    }
    if (fd->fd() > 2) {
      continue;
    }
    auto f = plan.files.find(fd->id());
    if (f == plan.files.end() || f->second.type() != images::REG || f->second.reg().ext()) {
      continue;
    }
    const std::string& name = f->second.reg().name();
    if (name.starts_with("/dev/pts/") || (name.starts_with("/dev/tty") && name != "/dev/tty")) {
      terminals.insert(name);
    }
  }
  for (auto& [id, fe] : plan.files) {
    if (fe.type() == images::REG && terminals.contains(fe.reg().name())) {
      fe.mutable_reg()->set_name(opts.callerTerminal);
      plan.fileBytes.erase(fe.id());
    }
  }
  plan.retargetedTerminals.assign(terminals.begin(), terminals.end());
  return {};
}

Result<RestorePlan> makeRestorePlan(const RestoreImages& images, const PlanOptions& opts) {
  RestorePlan plan;
  plan.images = &images;
  const auto& pstree = images.entries("pstree.img");
  if (pstree.empty()) {
    return failMsg("the dump has no pstree.img entries: nothing to restore");
  }
  std::map<pid_t, size_t> index;
  for (const auto& e : pstree) {
    auto ps = parse<images::PstreeEntry>(e.payload, "pstree.img");
    if (!ps) {
      return fail(std::move(ps).error());
    }
    TaskPlan t;
    t.pid = static_cast<pid_t>(ps->pid());
    t.ppid = plan.tasks.empty() ? 0 : static_cast<pid_t>(ps->ppid());
    t.pstree = std::move(*ps);
    if (t.pid <= 0 || index.contains(t.pid)) {
      return failMsg("pstree.img: bad or repeated pid " + std::to_string(t.pid));
    }
    if (t.ppid != 0) {
      auto parent = index.find(t.ppid);
      if (parent == index.end()) {
        return failMsg("pstree.img: the parent " + std::to_string(t.ppid) + " of pid " +
                       std::to_string(t.pid) + " comes after it or is not in the dump");
      }
      plan.tasks[parent->second].children.push_back(t.pid);
    }
    index[t.pid] = plan.tasks.size();
    plan.tasks.push_back(std::move(t));
  }
  // Descendants, children first: walk the list backwards (children come after parents).
  for (size_t i = plan.tasks.size(); i-- > 1;) {
    TaskPlan& t = plan.tasks[i];
    TaskPlan& parent = plan.tasks[index.at(t.ppid)];
    parent.descendants.push_back(t.pid);
    parent.descendants.insert(parent.descendants.end(), t.descendants.begin(),
                              t.descendants.end());
  }
  CRPIPE_TRY(planSessions(plan, opts));

  for (const auto& e : images.entries("files.img")) {
    auto fe = parse<images::FileEntry>(e.payload, "files.img");
    if (!fe) {
      return fail(std::move(fe).error());
    }
    uint32_t id = fe->id();
    plan.files.emplace(id, std::move(*fe));
    plan.fileBytes.emplace(id, e.payload);
  }
  CRPIPE_TRY(retargetShellJobTerminal(plan, images, opts));
  for (const char* name : {"pipes-data.img", "fifo-data.img"}) {
    for (const auto& e : images.entries(name)) {
      auto pd = parse<images::PipeDataEntry>(e.payload, name);
      if (!pd) {
        return fail(std::move(pd).error());
      }
      (std::string(name) == "pipes-data.img" ? plan.pipeData : plan.fifoData)[pd->pipe_id()] = &e;
    }
  }

  // --inherit-fd: every resource the images need from outside must be given, and every
  // one given must be needed.
  {
    std::map<std::string, int> given;
    for (const auto& [n, res] : opts.inheritFds) {
      if (!given.emplace(res, n).second) {
        return failMsg("--inherit-fd fd[" + std::to_string(n) + "]:" + res + ": " + res +
                       " is given twice");
      }
    }
    std::set<std::string> used;
    for (const auto& [id, fe] : plan.files) {
      std::string key;
      if (fe.type() == images::UNIXSK && fe.usk().crpipe().ext_inherit()) {
        key = "socket:[" + std::to_string(fe.usk().ino()) + "]";
      } else if (fe.type() == images::REG && fe.reg().ext()) {
        key = fe.reg().name();
      } else if (fe.type() == images::PIPE && fe.pipe().crpipe().external()) {
        key = "pipe:[" + std::to_string(fe.pipe().pipe_id()) + "]";
      } else {
        continue;
      }
      auto it = given.find(key);
      if (it == given.end()) {
        return failMsg("the images need " + key + " from outside the tree (dumped as external); "
                       "give it with --inherit-fd fd[N]:" + key);
      }
      plan.inherited[id] = it->second;
      used.insert(key);
    }
    for (const auto& [res, n] : given) {
      if (!used.contains(res)) {
        return failMsg("--inherit-fd fd[" + std::to_string(n) + "]:" + res + " matches nothing "
                       "in the images (no external " + res + ")");
      }
    }
    plan.coordinatorPid = ::getpid();
  }
  auto kinds = restorer::makeRestoreKinds();
  // Every description of one group (a pipe's ends, a FIFO's opens, else one description)
  // is created by the first task that holds any of them, in pstree and fd order.
  std::unordered_map<std::string, pid_t> groupOwner;
  std::map<uint32_t, pid_t> creator;
  int maxFd = 2;
  for (auto& t : plan.tasks) {
    const std::string img = "fdinfo-" + std::to_string(t.pid) + ".img";
    for (const auto& e : images.entries(img)) {
      auto fd = parse<images::FdinfoEntry>(e.payload, img);
      if (!fd) {
        return fail(std::move(fd).error());
      }
      auto where = [&]() { return fdWhere(t.pid, fd->fd()); };
      auto file = plan.files.find(fd->id());
      if (file == plan.files.end()) {
        return failMsg(where() + ": file id " + std::to_string(fd->id()) + " is not in files.img");
      }
      const images::FileEntry& fe = file->second;
      restorer::RestoreKind* kind = restorer::findKind(kinds, fe.type());
      if (kind == nullptr) {
        return failMsg(where() + ": files of type " + images::FdTypes_Name(fe.type()) +
                       " cannot be restored yet");
      }
      auto ok = kind->check(fe);
      if (!ok) {
        return fail(std::move(ok).error().context(where()));
      }
      maxFd = std::max(maxFd, static_cast<int>(fd->fd()));
      auto [owner, fresh] = groupOwner.try_emplace(kind->groupKey(fe), t.pid);
      (void)fresh;
      creator.try_emplace(fe.id(), owner->second);
      t.fds.push_back(std::move(*fd));
    }
  }
  CRPIPE_TRY(planUnixNamespaces(plan));
  // Unix sockets: their own planner decides who makes each (and overrides the above).
  CRPIPE_TRY(planUnixSockets(images, opts, plan, creator));
  for (const auto& t : plan.tasks) {
    for (uint32_t id : t.scmFiles) {
      const images::FileEntry& fe = plan.files.at(id);
      restorer::RestoreKind* kind = restorer::findKind(kinds, fe.type());
      auto ok = kind != nullptr ? kind->check(fe) : Status{};
      if (!ok) {
        return fail(std::move(ok).error().context("file id " + std::to_string(id) +
                                                  " passed with SCM_RIGHTS"));
      }
    }
  }
  plan.parkAfterShare = opts.stopBeforeMemory;
  // Who creates what, who sends what to whom.
  std::map<pid_t, TaskPlan*> byPid;
  for (auto& t : plan.tasks) {
    byPid[t.pid] = &t;
  }
  for (const auto& [id, pid] : creator) {
    byPid.at(pid)->creates.push_back(id);
  }
  for (auto& t : plan.tasks) {
    std::set<uint32_t> seen;
    for (const auto& fd : t.fds) {
      pid_t c = creator.at(fd.id());
      if (c != t.pid && seen.insert(fd.id()).second) {
        t.receives.emplace_back(fd.id(), c);
        byPid.at(c)->sends.emplace_back(fd.id(), t.pid);
      }
    }
  }
  plan.serviceFdBase = std::max(maxFd + 1, 10);
  return plan;
}

void RestorePlan::fillOrder(size_t i, const std::string& token,
                            const std::vector<std::pair<pid_t, int>>& channels,
                            proto::TaskOrder::Builder out) const {
  const TaskPlan& t = tasks[i];
  std::string bytes = t.pstree.SerializeAsString();
  out.setPstree(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
  out.setSetsid(t.setsid);
  out.setPgid(t.pgid);
  auto ch = out.initChildren(static_cast<unsigned>(t.children.size()));
  for (size_t k = 0; k < t.children.size(); ++k) {
    ch.set(static_cast<unsigned>(k), t.children[k]);
  }
  auto de = out.initDescendants(static_cast<unsigned>(t.descendants.size()));
  for (size_t k = 0; k < t.descendants.size(); ++k) {
    de.set(static_cast<unsigned>(k), t.descendants[k]);
  }
  auto cf = out.initChannels(static_cast<unsigned>(channels.size()));
  for (size_t k = 0; k < channels.size(); ++k) {
    cf[static_cast<unsigned>(k)].setPid(channels[k].first);
    cf[static_cast<unsigned>(k)].setFd(channels[k].second);
  }
  out.setServiceFdBase(serviceFdBase);
  out.setToken(token);
  auto fds = out.initFds(static_cast<unsigned>(t.fds.size()));
  for (size_t k = 0; k < t.fds.size(); ++k) {
    std::string b = t.fds[k].SerializeAsString();
    fds.set(static_cast<unsigned>(k),
            kj::arrayPtr(reinterpret_cast<const kj::byte*>(b.data()), b.size()));
  }
  // The descriptions this task creates, then what they refer to (a FIFO's path entry).
  std::vector<uint32_t> ids = t.creates;
  std::set<uint32_t> listed(ids.begin(), ids.end());
  for (uint32_t id : t.unixRefs) {
    if (listed.insert(id).second) {
      ids.push_back(id);
    }
  }
  for (uint32_t id : t.creates) {
    const auto& fe = files.at(id);
    if (fe.type() == images::FIFO && fe.fifo().has_regf_id()) {
      ids.push_back(fe.fifo().regf_id());
    }
  }
  std::vector<std::pair<bool, const ImageEntryData*>> data;
  std::set<std::pair<bool, uint32_t>> dataSeen;
  for (uint32_t id : t.creates) {
    const auto& fe = files.at(id);
    bool fifo = fe.type() == images::FIFO;
    if (fe.type() != images::PIPE && !fifo) {
      continue;
    }
    uint32_t pipeId = fifo ? fe.fifo().pipe_id() : fe.pipe().pipe_id();
    const auto& src = fifo ? fifoData : pipeData;
    auto it = src.find(pipeId);
    if (it != src.end() && dataSeen.insert({fifo, pipeId}).second) {
      data.emplace_back(fifo, it->second);
    }
  }
  auto fl = out.initFiles(static_cast<unsigned>(ids.size()));
  for (size_t k = 0; k < ids.size(); ++k) {
    if (auto same = fileBytes.find(ids[k]); same != fileBytes.end()) {
      fl.set(static_cast<unsigned>(k),
             kj::arrayPtr(reinterpret_cast<const kj::byte*>(same->second.data()), same->second.size()));
      continue;
    }
    auto it = files.find(ids[k]);
    std::string b = it != files.end() ? it->second.SerializeAsString() : std::string();
    fl.set(static_cast<unsigned>(k),
           kj::arrayPtr(reinterpret_cast<const kj::byte*>(b.data()), b.size()));
  }
  auto pd = out.initPipeData(static_cast<unsigned>(data.size()));
  for (size_t k = 0; k < data.size(); ++k) {
    auto d = pd[static_cast<unsigned>(k)];
    d.setFifo(data[k].first);
    const auto& e = *data[k].second;
    d.setEntry(kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.payload.data()), e.payload.size()));
    auto bytes = images->data(e);
    d.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
  }
  auto se = out.initSends(static_cast<unsigned>(t.sends.size()));
  for (size_t k = 0; k < t.sends.size(); ++k) {
    se[static_cast<unsigned>(k)].setFileId(t.sends[k].first);
    se[static_cast<unsigned>(k)].setPeer(t.sends[k].second);
  }
  auto re = out.initReceives(static_cast<unsigned>(t.receives.size()));
  for (size_t k = 0; k < t.receives.size(); ++k) {
    re[static_cast<unsigned>(k)].setFileId(t.receives[k].first);
    re[static_cast<unsigned>(k)].setPeer(t.receives[k].second);
  }
  auto us = out.initUnixSockets(static_cast<unsigned>(t.unixOrders.size()));
  for (size_t k = 0; k < t.unixOrders.size(); ++k) {
    const auto& o = t.unixOrders[k];
    auto u = us[static_cast<unsigned>(k)];
    u.setFileId(o.fileId);
    u.setRole(o.role);
    u.setPartner(o.partner);
    u.setConnectTo(kj::arrayPtr(reinterpret_cast<const kj::byte*>(o.connectTo.data()),
                                o.connectTo.size()));
    u.setInFlight(o.inFlight);
    u.setKeepPath(o.keepPath);
  }
  auto pc = out.initPendingConnects(static_cast<unsigned>(t.pendingConnects.size()));
  for (size_t k = 0; k < t.pendingConnects.size(); ++k) {
    pc[static_cast<unsigned>(k)].setEmbryo(t.pendingConnects[k].first);
    pc[static_cast<unsigned>(k)].setRound(t.pendingConnects[k].second);
  }
  auto sf = out.initScmFiles(static_cast<unsigned>(t.scmFiles.size()));
  for (size_t k = 0; k < t.scmFiles.size(); ++k) {
    sf.set(static_cast<unsigned>(k), t.scmFiles[k]);
  }
  size_t nq = 0;
  for (uint32_t id : t.queueWrites) {
    nq += skQueues.at(id).size();
  }
  // The messages' data stays where the images have it (the image file, or what came on
  // the stream): the restorer maps those files, and each message says where its data is.
  auto sq = out.initSkQueues(static_cast<unsigned>(nq));
  size_t k = 0;
  for (uint32_t id : t.queueWrites) {
    for (const auto& m : skQueues.at(id)) {
      auto q = sq[static_cast<unsigned>(k++)];
      auto entry = m.entry();
      q.setEntry(kj::arrayPtr(reinterpret_cast<const kj::byte*>(entry.data()), entry.size()));
      q.setFile(m.image->dataFile);
      q.setOffset(m.image->dataOffset);
      q.setLength(m.image->dataLen);
    }
  }
  if (nq > 0) {
    auto df = out.initDataFiles(images->dataFiles());
    for (uint32_t f = 0; f < images->dataFiles(); ++f) {
      df.set(f, images->dataFd(f));
    }
  }
  out.setParkAfterShare(parkAfterShare);
  std::vector<std::pair<uint32_t, int>> inh;
  for (uint32_t id : t.creates) {
    if (auto it = inherited.find(id); it != inherited.end()) {
      inh.emplace_back(id, it->second);
    }
  }
  auto ih = out.initInherited(static_cast<unsigned>(inh.size()));
  for (size_t k = 0; k < inh.size(); ++k) {
    ih[static_cast<unsigned>(k)].setFileId(inh[k].first);
    ih[static_cast<unsigned>(k)].setPeer(inh[k].second);
  }
  out.setCoordinatorPid(coordinatorPid);
  auto nl = out.initNetns(static_cast<unsigned>(netns.size()));
  unsigned n = 0;
  for (const auto& [ino, fd] : netns) {
    nl[n].setIno(ino);
    nl[n].setFd(fd.get());
    ++n;
  }
  auto ml = out.initMntns(static_cast<unsigned>(mntns.size()));
  n = 0;
  for (const auto& [ino, fd] : mntns) {
    ml[n].setIno(ino);
    ml[n].setFd(fd.get());
    ++n;
  }
}

}  // namespace crpipe
