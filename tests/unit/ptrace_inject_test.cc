// Syscall injection into a real child process held in a ptrace interrupt stop, as the
// collector holds every thread of a frozen tree.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "common/proc.h"
#include "common/ptrace/regs.h"
#include "common/ptrace/remote_mem.h"
#include "common/ptrace/syscall_session.h"
#include "common/unique_fd.h"

namespace crpipe::inject {
namespace {

// Not in glibc's headers: the kernel's flag for a sa_restorer given by the C library.
constexpr uint64_t kSaRestorer = 0x04000000;

// The kernel's struct sigaction for rt_sigaction(2) on x86_64.
struct KernelSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

int g_reportFd = -1;  // the child's end of its report pipe (set in the child only)

void usr2Handler(int) {
  char h = 'H';
  (void)!::write(g_reportFd, &h, 1);
}
void trapHandler(int) {}

// A child that installs handlers, then blocks in read(2) on a pipe: a restartable syscall.
// Killed and reaped by the destructor whatever the test did.
class BlockedChild {
 public:
  BlockedChild() {
    int in[2], out[2];
    EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    toChild_.reset(in[1]);
    fromChild_.reset(out[0]);
    UniqueFd childIn(in[0]), childOut(out[1]);
    pid_ = ::fork();
    if (pid_ == 0) {
      g_reportFd = childOut.get();
      struct sigaction sa {};
      sa.sa_handler = usr2Handler;
      sa.sa_flags = SA_RESTART | SA_ONSTACK;
      sigemptyset(&sa.sa_mask);
      sigaddset(&sa.sa_mask, SIGUSR1);
      sigaction(SIGUSR2, &sa, nullptr);
      struct sigaction st {};
      st.sa_handler = trapHandler;
      sigaction(SIGTRAP, &st, nullptr);
      char r = 'R';
      (void)!::write(childOut.get(), &r, 1);
      char c = 0;
      ssize_t n = ::read(childIn.get(), &c, 1);
      // Tell the parent what read(2) returned, and whether SIGTRAP's handler survived.
      struct sigaction now {};
      sigaction(SIGTRAP, nullptr, &now);
      char rep[3] = {static_cast<char>(n), c, now.sa_handler == trapHandler ? 'T' : 't'};
      (void)!::write(childOut.get(), rep, 3);
      ::_exit(0);
    }
    char r = 0;
    EXPECT_EQ(::read(fromChild_.get(), &r, 1), 1);
  }
  ~BlockedChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, __WALL);
    }
  }
  pid_t pid() const { return pid_; }
  int toChild() const { return toChild_.get(); }
  int fromChild() const { return fromChild_.get(); }
  // Waits until the child sleeps in read(2).
  void waitBlockedInRead() {
    for (int i = 0; i < 2000; ++i) {
      auto s = readProcFile("/proc/" + std::to_string(pid_) + "/syscall");
      if (s && s->rfind("0 ", 0) == 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ADD_FAILURE() << "child never blocked in read";
  }
  int exitStatus() {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return st;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd toChild_, fromChild_;
};

void seizeAndInterrupt(pid_t pid) {
  ASSERT_EQ(::ptrace(PTRACE_SEIZE, pid, nullptr, nullptr), 0) << strerror(errno);
  ASSERT_EQ(::ptrace(PTRACE_INTERRUPT, pid, nullptr, nullptr), 0);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, __WALL), pid);
  ASSERT_TRUE(WIFSTOPPED(st));
  ASSERT_EQ(st >> 16, PTRACE_EVENT_STOP);
}

TEST(PtraceInject, SyscallsRunInTheChildAndLeaveItAsItWas) {
  BlockedChild child;
  child.waitBlockedInRead();
  seizeAndInterrupt(child.pid());

  auto before = getRegs(child.pid());
  ASSERT_TRUE(before) << before.error().str();
  // Stopped inside read(2): the kernel reports the interrupted, restartable syscall.
  EXPECT_EQ(static_cast<long>(before->orig_rax), SYS_read);
  EXPECT_TRUE(interruptedRestartable(*before));
  auto restarted = withSyscallRestarted(*before);
  EXPECT_EQ(restarted.rax, static_cast<uint64_t>(SYS_read));
  EXPECT_EQ(restarted.rip, before->rip - 2);
  char codeBefore[16], codeAfter[16];
  ASSERT_TRUE(readRemote(child.pid(), before->rip - 2, codeBefore, sizeof(codeBefore)));
  auto xBefore = getXstate(child.pid());
  ASSERT_TRUE(xBefore);

  {
    auto insn = findSyscallInsn(child.pid(), *before);
    ASSERT_TRUE(insn) << insn.error().str();
    auto s = SyscallSession::begin(child.pid(), *insn);
    ASSERT_TRUE(s) << s.error().str();

    auto pid = s->call(SYS_getpid);
    ASSERT_TRUE(pid) << pid.error().str();
    EXPECT_EQ(*pid, child.pid());

    auto scratch = s->scratch();
    ASSERT_TRUE(scratch) << scratch.error().str();
    auto rc = s->call(SYS_rt_sigaction, {SIGUSR2, 0, *scratch, 8});
    ASSERT_TRUE(rc);
    EXPECT_EQ(*rc, 0);
    KernelSigaction ka{};
    ASSERT_TRUE(s->readScratch(0, &ka, sizeof(ka)));
    EXPECT_EQ(ka.handler, reinterpret_cast<uint64_t>(&usr2Handler));
    EXPECT_EQ(ka.flags & (SA_RESTART | SA_ONSTACK | kSaRestorer),
              SA_RESTART | SA_ONSTACK | kSaRestorer);
    EXPECT_NE(ka.restorer, 0u);
    EXPECT_EQ(ka.mask, uint64_t{1} << (SIGUSR1 - 1));

    // A -errno return is the kernel's answer, not an injection failure.
    auto bad = s->call(SYS_rt_sigaction, {SIGKILL, *scratch, 0, 8});
    ASSERT_TRUE(bad);
    EXPECT_EQ(*bad, -EINVAL);
    auto checked = s->callChecked("close", SYS_close, {9999});
    ASSERT_FALSE(checked);
    EXPECT_EQ(checked.error().err(), EBADF);

    // A signal sent during the session waits: every signal is blocked meanwhile.
    ASSERT_EQ(::kill(child.pid(), SIGUSR2), 0);
    auto again = s->call(SYS_getppid);
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, ::getpid());
    auto st = s->end();
    ASSERT_TRUE(st) << st.error().str();
  }

  auto after = getRegs(child.pid());
  ASSERT_TRUE(after);
  EXPECT_EQ(std::memcmp(&*before, &*after, sizeof(*before)), 0);
  ASSERT_TRUE(readRemote(child.pid(), before->rip - 2, codeAfter, sizeof(codeAfter)));
  EXPECT_EQ(std::memcmp(codeBefore, codeAfter, sizeof(codeBefore)), 0);
  auto xAfter = getXstate(child.pid());
  ASSERT_TRUE(xAfter);
  EXPECT_EQ(*xBefore, *xAfter);
  // The mask is the child's own again: SIGUSR2 not blocked, SIGUSR1 neither.
  uint64_t mask = ~uint64_t{0};
  ASSERT_EQ(::ptrace(PTRACE_GETSIGMASK, child.pid(), reinterpret_cast<void*>(sizeof(mask)), &mask),
            0);
  EXPECT_EQ(mask, 0u);
  // Back in an interrupt stop: a second session works the same.
  {
    auto s = SyscallSession::begin(child.pid(), *findSyscallInsn(child.pid(), *after));
    ASSERT_TRUE(s);
    auto tid = s->call(SYS_gettid);
    ASSERT_TRUE(tid);
    EXPECT_EQ(*tid, child.pid());
  }
  ASSERT_EQ(::ptrace(PTRACE_DETACH, child.pid(), nullptr, nullptr), 0);

  // The pending SIGUSR2 runs its handler; read(2) restarts (SA_RESTART) and gets our byte.
  char h = 0;
  ASSERT_EQ(::read(child.fromChild(), &h, 1), 1);
  EXPECT_EQ(h, 'H');
  char x = 'x';
  ASSERT_EQ(::write(child.toChild(), &x, 1), 1);
  char rep[3] = {};
  ASSERT_EQ(::read(child.fromChild(), rep, 3), 3);
  EXPECT_EQ(rep[0], 1) << "read(2) did not restart";
  EXPECT_EQ(rep[1], 'x');
  EXPECT_EQ(rep[2], 'T') << "the child's SIGTRAP handler was reset";
  int st = child.exitStatus();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(PtraceInject, DestructorRestoresWithoutEnd) {
  BlockedChild child;
  child.waitBlockedInRead();
  seizeAndInterrupt(child.pid());
  auto before = getRegs(child.pid());
  ASSERT_TRUE(before);
  auto mapsBefore = readProcFile("/proc/" + std::to_string(child.pid()) + "/maps");
  ASSERT_TRUE(mapsBefore);
  {
    auto s = SyscallSession::begin(child.pid(), *findSyscallInsn(child.pid(), *before));
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->scratch(10000));
    ASSERT_TRUE(s->call(SYS_getpid));
    // Error path: the session goes out of scope without end().
  }
  auto after = getRegs(child.pid());
  ASSERT_TRUE(after);
  EXPECT_EQ(std::memcmp(&*before, &*after, sizeof(*before)), 0);
  // The scratch mapping is gone again.
  auto maps = readProcFile("/proc/" + std::to_string(child.pid()) + "/maps");
  ASSERT_TRUE(maps);
  EXPECT_EQ(*maps, *mapsBefore);
  ASSERT_EQ(::ptrace(PTRACE_DETACH, child.pid(), nullptr, nullptr), 0);
  char x = 'y';
  ASSERT_EQ(::write(child.toChild(), &x, 1), 1);
  char rep[3] = {};
  ASSERT_EQ(::read(child.fromChild(), rep, 3), 3);
  EXPECT_EQ(rep[0], 1);
  EXPECT_EQ(rep[1], 'y');
}

}  // namespace
}  // namespace crpipe::inject
