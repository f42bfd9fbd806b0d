#include "coordinator/socket_graph.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstdio>
#include <map>

#include "common/image_format.h"
#include "common/unique_fd.h"
#include "protos/fdinfo.pb.h"
#include "protos/pstree.pb.h"

namespace crpipe {

namespace {

// CRIU's uflags bits for unix sockets.
constexpr uint32_t kUskExtern = 1;
constexpr uint32_t kUskService = 2;
constexpr uint32_t kUskCallback = 4;
constexpr uint32_t kUskInherit = 8;

template <typename Msg, typename Fn>
Status eachEntry(int dirFd, const std::string& name, bool optional, Fn fn) {
  auto f = ImageFile::load(dirFd, name);
  if (!f) {
    if (optional && f.error().err() == ENOENT) {
      return {};
    }
    return fail(std::move(f).error());
  }
  for (const auto& p : f->pieces()) {
    if (p.type != ImagePiece::Type::Entry) {
      continue;
    }
    Msg m;
    if (!m.ParseFromArray(p.data.data(), static_cast<int>(p.data.size()))) {
      return failMsg(name + " at offset " + std::to_string(p.offset) + ": undecodable " +
                     m.GetTypeName());
    }
    CRPIPE_TRY(fn(m));
  }
  return {};
}

std::string flagsText(uint32_t uflags) {
  std::string out;
  auto add = [&out](const char* s) {
    if (!out.empty()) {
      out += ",";
    }
    out += s;
  };
  if (uflags & kUskExtern) {
    add("external");
  }
  if (uflags & kUskService) {
    add("service");
  }
  if (uflags & kUskCallback) {
    add("callback");
  }
  if (uflags & kUskInherit) {
    add("inherit");
  }
  return out;
}

std::string holdersText(const std::vector<SocketHolder>& hs) {
  if (hs.empty()) {
    return "nobody";
  }
  std::string out;
  for (const auto& h : hs) {
    if (!out.empty()) {
      out += " ";
    }
    out += std::to_string(h.pid) + "/" + std::to_string(h.fd);
  }
  return out;
}

}  // namespace

std::string socketTypeName(uint32_t type) {
  switch (type) {
    case SOCK_STREAM:
      return "stream";
    case SOCK_DGRAM:
      return "dgram";
    case SOCK_SEQPACKET:
      return "seqpacket";
    default:
      return std::to_string(type);
  }
}

std::string socketStateName(uint32_t state) {
  switch (state) {
    case 1:
      return "established";
    case 7:
      return "close";
    case 10:
      return "listen";
    case 2:
      return "syn-sent";
    default:
      return std::to_string(state);
  }
}


Result<std::vector<SocketNode>> loadSocketGraph(const std::string& dir) {
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) {
    return failSys("open image directory " + dir);
  }
  std::vector<SocketNode> nodes;
  std::map<uint32_t, size_t> byId;
  CRPIPE_TRY_CTX(eachEntry<images::FileEntry>(dfd.get(), "files.img", false,
                                              [&](const images::FileEntry& f) -> Status {
                                                if (!f.has_usk()) {
                                                  return {};
                                                }
                                                const auto& u = f.usk();
                                                SocketNode n;
                                                n.id = u.id();
                                                n.ino = u.ino();
                                                n.type = u.type();
                                                n.state = u.state();
                                                n.peer = u.peer();
                                                n.uflags = u.uflags();
                                                n.name = u.name();
                                                n.nameDir = u.name_dir();
                                                n.deleted = u.deleted();
                                                n.origin = u.crpipe().origin();
                                                n.extPeerName = u.crpipe().ext_peer_name();
                                                n.icons.assign(u.crpipe().icons().begin(),
                                                               u.crpipe().icons().end());
                                                if (n.origin == "embryo" &&
                                                    u.crpipe().has_peercred()) {
                                                  const auto& c = u.crpipe().peercred();
                                                  n.connectedBy =
                                                      SocketCred{c.pid(), c.uid(), c.gid()};
                                                }
                                                byId[n.id] = nodes.size();
                                                nodes.push_back(std::move(n));
                                                return {};
                                              }),
                 dir);
  std::vector<uint32_t> pids;
  CRPIPE_TRY_CTX(eachEntry<images::PstreeEntry>(dfd.get(), "pstree.img", false,
                                                [&](const images::PstreeEntry& p) -> Status {
                                                  pids.push_back(p.pid());
                                                  return {};
                                                }),
                 dir);
  for (uint32_t pid : pids) {
    CRPIPE_TRY_CTX(
        eachEntry<images::FdinfoEntry>(dfd.get(), imageFileName("fdinfo-%u", pid), true,
                                       [&](const images::FdinfoEntry& e) -> Status {
                                         auto it = byId.find(e.id());
                                         if (e.type() == images::UNIXSK && it != byId.end()) {
                                           nodes[it->second].holders.push_back({pid, e.fd()});
                                         }
                                         return {};
                                       }),
        dir);
  }
  CRPIPE_TRY_CTX(eachEntry<images::SkPacketEntry>(dfd.get(), "sk-queues.img", true,
                                                  [&](const images::SkPacketEntry& q) -> Status {
                                                    auto it = byId.find(q.id_for());
                                                    if (it != byId.end()) {
                                                      nodes[it->second].queuedMessages++;
                                                      nodes[it->second].queuedBytes += q.length();
                                                    }
                                                    return {};
                                                  }),
                 dir);
  return nodes;
}

std::string renderSocketGraph(const std::vector<SocketNode>& nodes) {
  std::map<uint32_t, const SocketNode*> byIno;
  for (const auto& n : nodes) {
    byIno[n.ino] = &n;
  }
  std::string out;
  char line[512];
  snprintf(line, sizeof(line), "%-10s %-9s %-11s %-24s %-16s %-22s %s\n", "INO", "TYPE", "STATE",
           "NAME", "HELD BY pid/fd", "PEER", "QUEUED");
  out += line;
  for (const auto& n : nodes) {
    std::string name = (n.name.empty() ? "-" : printableUnixName(n.name));
    if (!n.nameDir.empty()) {
      name += " (in " + n.nameDir + ")";
    }
    if (n.deleted) {
      name += " (deleted)";
    }
    std::string peer = "-";
    if (n.peer != 0) {
      peer = std::to_string(n.peer);
      auto it = byIno.find(n.peer);
      if (it != byIno.end()) {
        peer += " [" + holdersText(it->second->holders) + "]";
      } else {
        peer += " [outside" +
                (n.extPeerName.empty() ? "" : " " + printableUnixName(n.extPeerName)) + "]";
      }
    }
    std::string queued =
        std::to_string(n.queuedMessages) + " msgs/" + std::to_string(n.queuedBytes) + " B";
    snprintf(line, sizeof(line), "%-10u %-9s %-11s %-24s %-16s %-22s %s", n.ino,
             socketTypeName(n.type).c_str(), socketStateName(n.state).c_str(), name.c_str(),
             holdersText(n.holders).c_str(), peer.c_str(), queued.c_str());
    out += line;
    if (!n.icons.empty()) {
      out += "  icons:";
      for (uint32_t i : n.icons) {
        out += " " + std::to_string(i);
      }
    }
    if (n.connectedBy) {
      out += "  connected by pid " + std::to_string(n.connectedBy->pid) + " uid " +
             std::to_string(n.connectedBy->uid) + " gid " + std::to_string(n.connectedBy->gid);
    }
    std::string flags = flagsText(n.uflags);
    if (!flags.empty()) {
      out += "  flags: " + flags;
    }
    if (!n.origin.empty() && n.origin != "fd") {
      out += "  (" + n.origin + ")";
    }
    out += "\n";
  }
  out += std::to_string(nodes.size()) + " unix sockets\n";
  return out;
}

}  // namespace crpipe
