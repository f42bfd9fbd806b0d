#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/restore_phase.h"
#include "common/result.h"
#include "common/stage_stream.h"
#include "common/unique_fd.h"
#include "protos/fdinfo.pb.h"
#include "protos/pipe.pb.h"
#include "protos/pstree.pb.h"
#include "restorer/kinds/registry.h"

namespace crpipe::restorer {

// What a restorer knows before its TaskOrder: its channel, its log, and (inherited from
// its parent restorer, or given to the root on its command line) the channels of the
// tasks below it, by pid.
struct TaskStart {
  UniqueFd control;
  FILE* logSink = nullptr;  // at or above the service fd base; shared by every restorer
  int verbosity = 2;
  std::map<pid_t, UniqueFd> channels;
};

// One restored task's restorer: reads its TaskOrder, then carries out every phase the
// coordinator orders on its control channel, answering PhaseDone, until the channel
// ends. Between two orders it only blocks reading the channel.
class Task {
 public:
  explicit Task(TaskStart start);
  ~Task();
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // Runs until the coordinator closes the channel (0) or something failed (the failure
  // went to the coordinator; 1).
  int run();

 private:
  Status readOrder();
  Status phase(RestorePhase p);
  Status forkTree();
  Status setGroup(bool leaders);
  Status openDescriptions(RestorePhase p);
  Status shareAndInstall();
  [[noreturn]] void park();
  // In a new child (clone3 returned 0): keeps only what the child needs and runs it.
  [[noreturn]] void becomeChild(pid_t pid);

  Status send(capnp::MessageBuilder& mb);
  void sendFailure(const Error& e, RestorePhase p);
  std::string where(uint32_t fileId) const;
  // The kind that restores file id, or why there is none.
  Result<RestoreKind*> kindFor(uint32_t id) const;
  // A description made or received here, at its home fd when that is free (placeHome).
  Status keep(uint32_t id, UniqueFd fd);

  TaskStart start_;
  Log log_;
  std::unique_ptr<StageReader> reader_;
  std::unique_ptr<capnp::MessageReader> order_;  // the TaskOrder, alive while the task is
  std::unique_ptr<StageWriter> writer_;
  pid_t pid_ = 0;
  RestorePhase current_ = RestorePhase::FORK_TREE;
  uint32_t round_ = 0;  // Phase.round / Phase.rounds: pendingConnect comes in rounds
  uint32_t rounds_ = 1;

  // From the TaskOrder.
  images::PstreeEntry pstree_;
  bool setsid_ = false;
  pid_t pgid_ = 0;
  std::vector<pid_t> children_;
  std::set<pid_t> descendants_;
  int fdBase_ = 0;
  std::string token_;
  std::vector<images::FdinfoEntry> fds_;
  std::map<uint32_t, int> homes_;  // file id -> its lowest fd number here (placeHome)
  // The task's file entries, parsed on arena_: many small nested messages, allocated
  // together and never freed one by one (the restorer becomes the task).
  google::protobuf::Arena arena_;
  FileEntries files_;
  std::map<uint32_t, std::pair<images::PipeDataEntry, std::string>> pipeData_;
  std::map<uint32_t, std::pair<images::PipeDataEntry, std::string>> fifoData_;
  std::map<pid_t, std::vector<uint32_t>> sends_;  // receiver -> file ids
  std::map<uint32_t, pid_t> receives_;            // file id -> sender

  std::vector<std::unique_ptr<RestoreKind>> kinds_;
  std::map<RestorePhase, std::vector<uint32_t>> pending_;  // descriptions to open, by phase
  std::map<uint32_t, int> inherited_;                      // --inherit-fd: id -> crpipe's fd
  pid_t coordinatorPid_ = 0;
  std::map<uint32_t, UniqueFd> made_;                      // file id -> description
  UniqueFd transport_;
  bool parkAfterShare_ = false;  // --stop-before memory (development mode)
};

}  // namespace crpipe::restorer
