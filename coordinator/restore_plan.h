#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "coordinator/restore_images.h"
#include "protos/fdinfo.pb.h"
#include "protos/pipe.pb.h"
#include "protos/pstree.pb.h"
#include "protos/stage.capnp.h"

namespace crpipe {

// What one restorer does, decided by the coordinator from the images.
struct TaskPlan {
  images::PstreeEntry pstree;
  pid_t pid = 0;
  pid_t ppid = 0;  // 0 for the root
  bool setsid = false;
  pid_t sid = 0;   // after --shell-job mapping: what /proc must say once restored
  pid_t pgid = 0;  // after --shell-job mapping
  std::vector<pid_t> children;
  std::vector<pid_t> descendants;
  std::vector<images::FdinfoEntry> fds;
  std::vector<uint32_t> creates;                       // file ids this task creates
  std::vector<std::pair<uint32_t, pid_t>> sends;       // (file id, receiver)
  std::vector<std::pair<uint32_t, pid_t>> receives;    // (file id, sender)
  // Unix sockets (coordinator/unix_plan.cc): how each socket this task creates comes to
  // be, the entries it needs besides its own, and the queued messages it writes back.
  struct UnixOrder {
    uint32_t fileId = 0;
    proto::UnixRole role = proto::UnixRole::PLAIN;
    uint32_t partner = 0;
    std::string connectTo;
    bool inFlight = false;  // held by no task: only in a queued message (SCM_RIGHTS)
    bool keepPath = false;  // a deleted listener other tasks' pending clients connect to
  };
  std::vector<UnixOrder> unixOrders;
  std::vector<uint32_t> unixRefs;      // further unix entries this task needs to know
  std::vector<uint32_t> queueWrites;   // socket ids whose queue this task writes back
  std::vector<uint32_t> scmFiles;      // non-socket descriptions passed in those queues
  // Not-yet-accepted connections whose clients this task connects: (embryo id, round of
  // the pendingConnect phase), in accept order per listener.
  std::vector<std::pair<uint32_t, uint32_t>> pendingConnects;
};

struct PlanOptions {
  bool shellJob = false;
  bool stopBeforeMemory = false;
  // Unix sockets whose peer was outside the tree (issue 5).
  bool extUnixSk = false;                           // reconnect dgram clients by name
  std::map<uint32_t, std::string> extUnixSkInodes;  // ino -> "" (dump-time name) or PATH
  std::set<uint32_t> unixDead;                      // ino: restore as a dead connection
  std::vector<std::pair<std::string, std::string>> unixNameMap;
  std::vector<std::pair<int, std::string>> inheritFds;  // --inherit-fd fd[N]:RESOURCE
  pid_t callerSid = 0;
  pid_t callerPgid = 0;
  // --shell-job: crpipe's own terminal (ttyname of its stdin, stdout or stderr; "" if none).
  // The terminal the dumped root had on its stdio is reopened as this one.
  std::string callerTerminal;
};

// A queued message a restorer writes back: its SkPacketEntry bytes (rewritten by
// --unix-name-map, or the image's own) and its data (a span of an image data file).
struct QueuedMessage {
  const ImageEntryData* image = nullptr;
  std::string rewritten;  // empty: the image's own entry
  std::string_view entry() const { return rewritten.empty() ? image->payload : rewritten; }
};

struct RestorePlan {
  std::vector<TaskPlan> tasks;  // parents before children; tasks[0] is the root
  std::map<uint32_t, images::FileEntry> files;
  // The FileEntry bytes of files.img, for the task orders, of every entry the plan left
  // as it was (an entry it edits, such as a name --unix-name-map rewrites, is dropped here
  // and serialized again).
  std::unordered_map<uint32_t, std::string_view> fileBytes;
  const RestoreImages* images = nullptr;  // what the plan was made from (outlives it)
  std::map<uint32_t, const ImageEntryData*> pipeData;  // by pipe_id
  std::map<uint32_t, const ImageEntryData*> fifoData;
  std::map<uint32_t, std::vector<QueuedMessage>> skQueues;  // by socket id, in queue order
  std::map<uint32_t, int> inherited;  // file id -> the coordinator's fd (--inherit-fd)
  pid_t coordinatorPid = 0;
  // Network namespaces (by inode) of unix sockets made outside crpipe's own: the
  // coordinator's open fd of each, taken by the restorers with pidfd_getfd.
  std::map<uint64_t, UniqueFd> netns;
  // Mount namespaces (by inode) where socket files are bound outside crpipe's own: the
  // restorer joins one with setns for each bind, connect or unlink by such a name.
  std::map<uint64_t, UniqueFd> mntns;
  std::vector<std::string> retargetedTerminals;  // --shell-job: dumped paths now callerTerminal
  bool parkAfterShare = false;
  int serviceFdBase = 0;
  uint32_t connectRounds = 1;  // rounds of the pendingConnect phase (at least one)

  const TaskPlan* task(pid_t pid) const;
  // The TaskOrder of tasks[i] (channels: the root's descendants' channel fds).
  void fillOrder(size_t i, const std::string& token, const std::vector<std::pair<pid_t, int>>& channels,
                 proto::TaskOrder::Builder out) const;
};

// Plans the restore: the tree with its sessions and groups, which task creates each open
// file description and who receives it. Refuses, before anything is created, what cannot
// be restored, naming the task and the resource.
Result<RestorePlan> makeRestorePlan(const RestoreImages& images, const PlanOptions& opts);

}  // namespace crpipe
