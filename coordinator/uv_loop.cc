#include "coordinator/uv_loop.h"

#include <cstdio>

namespace crpipe {

UvLoop::UvLoop() { uv_loop_init(&loop_); }

UvLoop::~UvLoop() {
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop_) != 0) {
    // Only reachable through a handle leak; report it rather than abort.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          fprintf(stderr, "crpipe: libuv handle of type %s left open\n",
                  uv_handle_type_name(h->type));
        },
        nullptr);
  }
}

}  // namespace crpipe
