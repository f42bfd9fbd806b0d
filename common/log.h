#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace crpipe {

// Milliseconds since `start`, for the log's timings.
inline double msSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// A log sink built by main() and passed down; no global logger. Levels follow CRIU's -v:
// 0 errors only, 1 +warnings, 2 +info (default), 3 +debug, 4 +trace.
class Log {
 public:
  Log() = default;
  Log(FILE* sink, int level, std::string prefix)
      : sink_(sink), level_(level), prefix_(std::move(prefix)) {}

  int level() const { return level_; }
  bool enabled(int level) const { return sink_ != nullptr && level <= level_; }

  void error(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void warn(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void info(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
  void debug(const char* fmt, ...) __attribute__((format(printf, 2, 3)));

 private:
  void write(int level, const char* tag, const char* fmt, va_list ap);

  FILE* sink_ = nullptr;
  int level_ = 2;
  std::string prefix_;
};

}  // namespace crpipe
