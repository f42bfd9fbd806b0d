#pragma once

#include <unistd.h>

#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "protos/sk_unix.pb.h"

namespace crpipe::restorer {

// SO_PEERCRED is taken from whoever calls socketpair(), listen() or connect(): its pid
// and its effective uid and gid at that moment. PeerCreds runs such a call as the task
// the dump recorded:
// - with that effective uid/gid (set for the call, then back to the restorer's own);
// - from that pid too when it is free (its task exited before the dump): a short-lived
//   helper cloned with that pid (clone3 set_tid) sharing this task's fd table, so the
//   sockets it makes or connects are this task's. The helper exits at once; SO_PEERCRED
//   keeps naming its pid, as it kept naming the exited original.
// A pid that is another live task is not taken: the call keeps this task's pid (the
// coordinator already routes such calls to the task itself when it is in the tree).
class PeerCreds {
 public:
  // The restorer's own pid and effective ids, read once: every call puts them back.
  explicit PeerCreds(Log* log)
      : log_(log), self_(::getpid()), euid_(::geteuid()), egid_(::getegid()) {}

  // fn returns the fds it made (kept by this task), or none.
  using Call = std::function<Result<std::vector<int>>()>;
  Result<std::vector<int>> as(const images::UcredEntry* cred, const Call& fn);
  // The same for a call that makes no fds.
  Status as(const images::UcredEntry* cred, const std::function<Status()>& fn);

 private:
  Result<std::vector<int>> inHelper(const images::UcredEntry& cred, const Call& fn);

  Log* log_;
  pid_t self_;
  uid_t euid_;
  gid_t egid_;
};

// Keeps a pid that no task has taken while it lives: a child cloned with that pid (clone3
// set_tid) that does nothing but wait for its release, then exits and is reaped. Root may
// name any pid that exists in SCM_CREDENTIALS, and the kernel refuses one that does not
// (ESRCH): queued messages of a sender that exited before the dump are written while such
// a holder stands in for it, and keep naming that pid afterwards, as the originals did.
// The holder shares the fd table (CLONE_FILES), so it holds no copies of this task's fds.
class PidHold {
 public:
  // A holder of `pid`, or none when the pid is taken (it exists: nothing to hold).
  static Result<std::optional<PidHold>> ifFree(pid_t pid);
  PidHold(PidHold&& o) noexcept
      : child_(std::exchange(o.child_, 0)),
        release_(std::move(o.release_)),
        wait_(std::move(o.wait_)) {}
  PidHold& operator=(PidHold&&) = delete;
  ~PidHold();  // releases the holder and reaps it

 private:
  PidHold(pid_t child, UniqueFd release, UniqueFd wait)
      : child_(child), release_(std::move(release)), wait_(std::move(wait)) {}
  pid_t child_ = 0;
  UniqueFd release_;  // closing it (the last writer) ends the holder's read
  UniqueFd wait_;     // the holder's read end, closed once it is reaped
};

// The recorded SO_PEERCRED of e, or nullptr.
inline const images::UcredEntry* recordedPeerCred(const images::UnixSkEntry& e) {
  return e.crpipe().has_peercred() ? &e.crpipe().peercred() : nullptr;
}

}  // namespace crpipe::restorer
