/* Files and pipes held by a two-process tree: positions, flags, CLOEXEC, owners, a pipe
 * with data in flight shared by parent and child, a FIFO with data, an unlinked file and
 * /dev/null. After the dump (with --leave-running) every byte must still be readable. */
#include "wl.h" /* first: it defines _GNU_SOURCE */

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char kPipeData[] = "in flight through the pipe";
static const char kFifoData[] = "waiting in the fifo";

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: files_pipes DIR\n");
    return 2;
  }
  wl_init();
  const char* dir = argv[1];
  char path[512], fifo[512], gone[512];
  snprintf(path, sizeof(path), "%s/data.txt", dir);
  snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
  snprintf(gone, sizeof(gone), "%s/unlinked.txt", dir);

  int f = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0640);
  WL_MUST(f >= 0);
  WL_MUST(write(f, "0123456789", 10) == 10);
  WL_MUST(lseek(f, 3, SEEK_SET) == 3);
  WL_MUST(fcntl(f, F_SETOWN, getpid()) == 0);
  WL_MUST(fcntl(f, F_SETSIG, SIGUSR2) == 0);

  int ro = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  WL_MUST(ro >= 0);
  WL_MUST(lseek(ro, 7, SEEK_SET) == 7);

  int un = open(gone, O_RDWR | O_CREAT | O_TRUNC, 0600);
  WL_MUST(un >= 0 && unlink(gone) == 0);

  int null = open("/dev/null", O_WRONLY);
  WL_MUST(null >= 0);

  int p[2];
  WL_MUST(pipe2(p, 0) == 0);
  /* An empty pipe whose size is not the default: the size alone must come back. */
  int big[2];
  WL_MUST(pipe2(big, 0) == 0);
  WL_MUST(fcntl(big[0], F_SETPIPE_SZ, 1 << 20) >= (1 << 20));
  /* O_ASYNC cannot be given to pipe2() or open(): only F_SETFL sets it. */
  WL_MUST(fcntl(big[0], F_SETFL, fcntl(big[0], F_GETFL) | O_ASYNC) == 0);
  WL_MUST(write(p[1], kPipeData, sizeof(kPipeData)) == (ssize_t)sizeof(kPipeData));

  WL_MUST(mkfifo(fifo, 0600) == 0);
  int fr = open(fifo, O_RDONLY | O_NONBLOCK);
  int fw = open(fifo, O_WRONLY);
  WL_MUST(fr >= 0 && fw >= 0);
  WL_MUST(write(fw, kFifoData, sizeof(kFifoData)) == (ssize_t)sizeof(kFifoData));

  pid_t child = fork();
  WL_MUST(child >= 0);
  if (child == 0) {
    /* The child shares the pipe and the file descriptions with its parent. */
    wl_wait_verify();
    _exit(0);
  }
  struct stat st;
  WL_MUST(fstat(p[0], &st) == 0);
  printf("READY {\"pid\": %d, \"child\": %d, \"file\": {\"fd\": %d, \"path\": \"%s\", \"pos\": 3},"
         " \"ro\": {\"fd\": %d, \"pos\": 7}, \"unlinked\": {\"fd\": %d, \"path\": \"%s\"},"
         " \"null\": %d, \"pipe\": {\"r\": %d, \"w\": %d, \"ino\": %lu, \"bytes\": %zu},"
         " \"fifo\": {\"r\": %d, \"w\": %d, \"path\": \"%s\", \"bytes\": %zu}}\n",
         getpid(), child, f, path, ro, un, gone, null, p[0], p[1], (unsigned long)st.st_ino,
         sizeof(kPipeData), fr, fw, fifo, sizeof(kFifoData));
  wl_wait_verify();
  kill(child, SIGUSR1);
  waitpid(child, NULL, 0);

  char buf[256];
  WL_CHECK(lseek(f, 0, SEEK_CUR) == 3, "file position moved");
  WL_CHECK(fcntl(big[0], F_GETPIPE_SZ) == (1 << 20), "size of the empty pipe lost (%d)",
           fcntl(big[0], F_GETPIPE_SZ));
  WL_CHECK(fcntl(big[0], F_GETFL) & O_ASYNC, "O_ASYNC of the empty pipe lost");
  WL_CHECK(lseek(ro, 0, SEEK_CUR) == 7, "read-only position moved");
  WL_CHECK(fcntl(ro, F_GETFD) == FD_CLOEXEC, "CLOEXEC lost");
  WL_CHECK(fcntl(f, F_GETOWN) == getpid(), "owner lost");
  WL_CHECK(fcntl(f, F_GETSIG) == SIGUSR2, "owner signal lost");
  ssize_t n = read(p[0], buf, sizeof(buf));
  WL_CHECK(n == (ssize_t)sizeof(kPipeData) && memcmp(buf, kPipeData, sizeof(kPipeData)) == 0,
           "pipe data lost (%zd bytes)", n);
  n = read(fr, buf, sizeof(buf));
  WL_CHECK(n == (ssize_t)sizeof(kFifoData) && memcmp(buf, kFifoData, sizeof(kFifoData)) == 0,
           "fifo data lost (%zd bytes)", n);
  unlink(fifo);
  unlink(path);
  return wl_finish();
}
