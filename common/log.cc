#include "common/log.h"

#include <time.h>

namespace crpipe {

void Log::write(int level, const char* tag, const char* fmt, va_list ap) {
  if (!enabled(level)) {
    return;
  }
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  // One fprintf per line keeps lines whole when several stages share a log file.
  char line[4096];
  vsnprintf(line, sizeof(line), fmt, ap);
  fprintf(sink_, "(%5ld.%06ld) %s%s%s\n", static_cast<long>(ts.tv_sec), ts.tv_nsec / 1000,
          prefix_.c_str(), tag, line);
  fflush(sink_);
}

#define CRPIPE_LOG_FN(name, level, tag) \
  void Log::name(const char* fmt, ...) { \
    va_list ap;                          \
    va_start(ap, fmt);                   \
    write(level, tag, fmt, ap);          \
    va_end(ap);                          \
  }

CRPIPE_LOG_FN(error, 0, "Error: ")
CRPIPE_LOG_FN(warn, 1, "Warn: ")
CRPIPE_LOG_FN(info, 2, "")
CRPIPE_LOG_FN(debug, 3, "")

}  // namespace crpipe
