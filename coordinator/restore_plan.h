#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/result.h"
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
};

struct PlanOptions {
  bool shellJob = false;
  pid_t callerSid = 0;
  pid_t callerPgid = 0;
};

struct RestorePlan {
  std::vector<TaskPlan> tasks;  // parents before children; tasks[0] is the root
  std::map<uint32_t, images::FileEntry> files;
  std::map<uint32_t, ImageEntryData> pipeData;  // by pipe_id
  std::map<uint32_t, ImageEntryData> fifoData;
  int serviceFdBase = 0;

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
