// crpipe-restorer: one per restored task. It will join the namespaces a resource lives
// in, create fds when the coordinator orders a phase, then become the task (issue 4).
// For now it only speaks the stage protocol's hello and refuses to restore.
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc > 1 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::puts(
        "usage: crpipe-restorer --control-fd N\n"
        "  Started by `crpipe run restore`; not meant to be run by hand.");
    return 0;
  }
  std::fputs("crpipe-restorer: restoring tasks is not implemented yet\n", stderr);
  return 2;
}
