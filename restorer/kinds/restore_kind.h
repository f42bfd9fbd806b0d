#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/log.h"
#include "common/restore_phase.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "protos/fdinfo.pb.h"
#include "protos/pipe.pb.h"

namespace crpipe::restorer {

// What an opener answers: the description is created (its fd, CLOEXEC, at a temporary
// number), or it cannot be created before a later phase (a unix socket that connects to a
// listener bound in bindListen: issue 5). The restorer calls open() again in that phase.
class OpenResult {
 public:
  static OpenResult done(UniqueFd fd) { return OpenResult(std::move(fd), std::nullopt); }
  static OpenResult waitFor(RestorePhase p) { return OpenResult(UniqueFd(), p); }

  bool isDone() const { return !waitFor_.has_value(); }
  RestorePhase phase() const { return *waitFor_; }
  UniqueFd takeFd() { return std::move(fd_); }

 private:
  OpenResult(UniqueFd fd, std::optional<RestorePhase> p) : fd_(std::move(fd)), waitFor_(p) {}
  UniqueFd fd_;
  std::optional<RestorePhase> waitFor_;
};

// A pipe this task created: both ends, until every description of it is made.
struct CreatedPipe {
  UniqueFd read;
  UniqueFd write;
  bool readGiven = false;
  bool writeGiven = false;
};

// A task's file entries by id (parsed on the restorer's arena).
using FileEntries = std::map<uint32_t, const images::FileEntry*>;

// What an opener may use: the task's file entries by id, the data of its pipes, and
// state shared by the descriptions of one object (the two ends of a pipe). Lives for the
// openFiles phase of one task.
struct OpenContext {
  pid_t pid = 0;
  RestorePhase phase = RestorePhase::OPEN_FILES;
  const FileEntries& files;
  // pipe_id -> (entry, data); FIFOs and pipes apart (their ids are inodes of different
  // file systems and may coincide).
  const std::map<uint32_t, std::pair<images::PipeDataEntry, std::string>>& pipeData;
  const std::map<uint32_t, std::pair<images::PipeDataEntry, std::string>>& fifoData;
  std::map<uint32_t, CreatedPipe> pipes;  // by pipe_id
  std::map<uint32_t, UniqueFd> fifoHelpers;  // by pipe_id: an O_RDWR open kept while opening
  Log& log;
  int fdBase = 0;  // new descriptions are moved at or above this number (moveAbove)...
  // ...unless they can go straight to their home: the lowest fd number this task holds
  // them at (file id -> fd), when that slot is free (placeHome).
  const std::map<uint32_t, int>* homes = nullptr;
  // Descriptions this task made in earlier phases and this one, by file id (unix sockets
  // pass them with SCM_RIGHTS in refillQueues).
  const std::map<uint32_t, UniqueFd>* made = nullptr;
  // --inherit-fd: file id -> the coordinator's fd number that stands for it.
  const std::map<uint32_t, int>* inherited = nullptr;
  pid_t coordinatorPid = 0;
  // A phase that comes in rounds (pendingConnect): which one, of how many.
  uint32_t round = 0;
  uint32_t rounds = 1;
};

// One kind of file on the restore side, the mirror of collector/kinds/. An opener creates
// one open file description from its FileEntry; the restorer puts it at its fd numbers
// (dup3), hands it to other tasks (SCM_RIGHTS) and applies nothing else: everything a
// description carries (flags, position, owner, data) is the kind's job.
class RestoreKind {
 public:
  virtual ~RestoreKind() = default;
  virtual std::string_view name() const = 0;
  virtual images::FdTypes type() const = 0;

  // Descriptions with the same key are created by one task, in file-id order: both ends
  // and every other description of one pipe, every open of one FIFO. Default: the id.
  virtual std::string groupKey(const images::FileEntry& e) const {
    return "file " + std::to_string(e.id());
  }

  // The phase in which the restorer first calls open(): files are opened in openFiles;
  // unix sockets (issue 5) start in bindListen.
  virtual RestorePhase firstPhase() const { return RestorePhase::OPEN_FILES; }

  // Refuses, at plan time and before anything is created, an entry this kind cannot
  // restore; the message names the resource and why.
  virtual Status check(const images::FileEntry&) const { return {}; }

  // Reads what this kind needs from the task's order beyond the file entries (the unix
  // sockets' roles and queues); called once, before the first phase.
  virtual Status takeOrder(proto::TaskOrder::Reader, const FileEntries&) {
    return {};
  }

  // The kind's own work in phase ctx.phase (bindListen .. shareFds), for all of its
  // descriptions at once (the unix sockets of a task are made, connected and refilled
  // together): called once per phase (and once per round of a phase that comes in rounds,
  // ctx.round: pendingConnect), before that phase's open() calls, also in a task where
  // none of the kind's descriptions waits for it (a task may connect the client of a
  // pending connection it closed before the dump, and hold no socket at all).
  virtual Status atPhase(OpenContext&) { return {}; }

  // Creates the description of `e` with its flags, position, owner and data. A kind may
  // also answer WaitFor(a later phase, up to shareFds): it is then called again in that
  // phase (shareFds: right before the descriptions are handed over).
  virtual Result<OpenResult> open(OpenContext& ctx, const images::FileEntry& e) = 0;
};

// F_SETOWN_EX / F_SETSIG from a recorded owner; nothing when none was set.
// The owner (F_SETOWN_EX, F_SETSIG) of an open file description, then O_ASYNC if the
// dumped open flags had it: open(), pipe2() and socket() cannot set it, F_SETFL can.
Status applyFown(int fd, const images::FownEntry& fown, uint32_t dumpedFlags);

// --inherit-fd: a duplicate of the coordinator's fd `fd` (pidfd_getfd), CLOEXEC, above
// `base`.
Result<UniqueFd> takeInherited(pid_t coordinator, int fd, int base);

// Moves a new fd above the restorer's reserved range so it collides with no fd number
// of the restored task (they are all below `base`): F_DUPFD_CLOEXEC.
Result<UniqueFd> moveAbove(UniqueFd fd, int base);
// fd moved to `home` if that slot is free (nothing is ever closed under it); as it was
// otherwise, or for home -1. A description at its home needs no room above the tree's fds,
// so a task with N fds restores within about N of RLIMIT_NOFILE.
Result<UniqueFd> placeHome(UniqueFd fd, int home);
// The home of file id, or -1.
inline int homeOf(const std::map<uint32_t, int>* homes, uint32_t id) {
  if (homes == nullptr) {
    return -1;
  }
  auto it = homes->find(id);
  return it == homes->end() ? -1 : it->second;
}

}  // namespace crpipe::restorer
