#include "coordinator/progress_view.h"

#include <time.h>
#include <unistd.h>

namespace crpipe {

namespace {

uint64_t nowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

}  // namespace

ProgressView::ProgressView(FILE* out) : out_(out), tty_(::isatty(fileno(out)) == 1) {}

void ProgressView::update(const std::string& stage, const std::string& step, uint64_t done,
                          uint64_t total, const std::string& detail) {
  std::string text = stage + ": " + step + " " + std::to_string(done);
  if (total != 0) {
    text += "/" + std::to_string(total);
  }
  if (!detail.empty()) {
    text += " " + detail;
  }
  if (tty_) {
    // \r and erase-to-end-of-line: the line is rewritten in place.
    fprintf(out_, "\r\033[K%s", text.c_str());
    fflush(out_);
    statusShown_ = true;
    return;
  }
  std::string key = stage + "/" + step;
  uint64_t now = nowMs();
  bool last = total != 0 && done >= total;
  if (key != lastKey_ || last || now - lastPlainMs_ >= 1000) {
    fprintf(out_, "%s\n", text.c_str());
    fflush(out_);
    lastKey_ = key;
    lastPlainMs_ = now;
  }
}

void ProgressView::clear() {
  if (statusShown_) {
    fprintf(out_, "\r\033[K");
    fflush(out_);
    statusShown_ = false;
  }
}

void ProgressView::line(const std::string& text) {
  clear();
  fprintf(out_, "%s\n", text.c_str());
  fflush(out_);
}

}  // namespace crpipe
