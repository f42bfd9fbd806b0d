// A C++ program that throws after restore: unwinding needs the restored text, eh_frame
// and the loader's view of the mapped objects; a std::string and a std::map come back too.
#undef _GNU_SOURCE  // g++ defines it; wl.h does too
extern "C" {
#include "wl.h"
}
#include <map>
#include <stdexcept>
#include <string>

static int depth(int n) {
  if (n == 0) {
    throw std::runtime_error("thrown after restore");
  }
  return depth(n - 1) + 1;
}

int main() {
  wl_init();
  std::map<int, std::string> m;
  for (int i = 0; i < 100; ++i) {
    m[i] = std::string(i + 20, static_cast<char>('a' + i % 26));
  }
  printf("READY {\"pid\": %d}\n", getpid());
  wl_wait_verify();
  std::string what;
  try {
    depth(50);
  } catch (const std::exception& e) {
    what = e.what();
  }
  WL_CHECK(what == "thrown after restore", "caught '%s'", what.c_str());
  WL_CHECK(m.size() == 100 && m[42] == std::string(62, 'a' + 42 % 26), "map lost");
  printf(wl_failed ? "FAIL\n" : "PASS\n");
  return wl_failed;
}
