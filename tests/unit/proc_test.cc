// /proc parsers on canned kernel text.
#include <gtest/gtest.h>

#include "common/proc.h"

namespace crpipe {
namespace {

TEST(ProcStat, ParsesCommWithSpacesAndParens) {
  // comm "a) b (c" is legal: the kernel does not escape it.
  auto st = parseProcStat(
      "4711 (a) b (c) S 1 4711 4711 34816 4711 4194560 161 0 0 0 0 0 0 0 20 0 1 0 "
      "123456 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n");
  ASSERT_TRUE(st) << st.error().str();
  EXPECT_EQ(st->pid, 4711);
  EXPECT_EQ(st->comm, "a) b (c");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->pgid, 4711);
  EXPECT_EQ(st->sid, 4711);
  EXPECT_EQ(st->startTime, 123456u);
}

TEST(ProcStat, RefusesGarbage) {
  EXPECT_FALSE(parseProcStat("4711 no comm here"));
  EXPECT_FALSE(parseProcStat("4711 (x) S 1 2"));
  EXPECT_FALSE(parseProcStat(""));
}

TEST(FdInfo, ParsesRegularFile) {
  auto fi = parseFdInfo("pos:\t3\nflags:\t02102002\nmnt_id:\t27\nino:\t1234\n");
  ASSERT_TRUE(fi) << fi.error().str();
  EXPECT_EQ(fi->pos, 3u);
  EXPECT_EQ(fi->flags, 02102002u);  // O_CLOEXEC | O_APPEND | O_RDWR | O_LARGEFILE
  EXPECT_EQ(fi->mntId, 27);
  EXPECT_EQ(fi->ino, 1234u);
}

TEST(FdInfo, IgnoresExtraLinesAndNeedsPosAndFlags) {
  auto fi = parseFdInfo("pos:\t0\nflags:\t04000\nmnt_id:\t9\nino:\t77\neventfd-count: 2a\n");
  ASSERT_TRUE(fi);
  EXPECT_EQ(fi->flags, 04000u);
  EXPECT_FALSE(parseFdInfo("mnt_id:\t9\n"));
  EXPECT_FALSE(parseFdInfo("pos:\tx\nflags:\t0\n"));
}

TEST(PidList, ParsesChildrenFile) {
  EXPECT_EQ(parsePidList("12 13 400 \n"), (std::vector<pid_t>{12, 13, 400}));
  EXPECT_TRUE(parsePidList("").empty());
}

TEST(ProcStatus, FieldsByName) {
  const std::string text =
      "Name:\tcat (x)\nState:\tt (tracing stop)\nTgid:\t300\nTracerPid:\t12\n"
      "SigIgn:\t0000000000000010\nFDSize:\t64\nEmpty:\t\n";
  EXPECT_EQ(procStatusField(text, "State").value_or("?"), "t (tracing stop)");
  EXPECT_EQ(procStatusField(text, "TracerPid").value_or("?"), "12");
  EXPECT_EQ(procStatusField(text, "Name").value_or("?"), "cat (x)");
  EXPECT_EQ(procStatusField(text, "FDSize").value_or("?"), "64");
  EXPECT_EQ(procStatusField(text, "Empty").value_or("?"), "");
  EXPECT_FALSE(procStatusField(text, "Tgi"));  // a prefix is not a key
  EXPECT_FALSE(procStatusField(text, "NSpid"));
}

}  // namespace
}  // namespace crpipe

TEST(ProcLimits, ParsesEveryRowWithUnlimitedAndUnits) {
  const std::string text =
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max cpu time              unlimited            unlimited            seconds   \n"
      "Max file size             unlimited            unlimited            bytes     \n"
      "Max stack size            8388608              unlimited            bytes     \n"
      "Max open files            1024                 20000                files     \n"
      "Max nice priority         0                    0                    \n";
  auto l = crpipe::parseProcLimits(text);
  ASSERT_TRUE(l.has_value()) << l.error().str();
  ASSERT_EQ(l->size(), 5u);
  EXPECT_EQ((*l)[0].cur, ~uint64_t{0});
  EXPECT_EQ((*l)[2].cur, 8388608u);
  EXPECT_EQ((*l)[2].max, ~uint64_t{0});
  EXPECT_EQ((*l)[3].cur, 1024u);
  EXPECT_EQ((*l)[3].max, 20000u);
  EXPECT_EQ((*l)[4].max, 0u);
}

TEST(ProcLimits, RefusesGarbage) {
  EXPECT_FALSE(crpipe::parseProcLimits("").has_value());
  EXPECT_FALSE(crpipe::parseProcLimits("Limit  x\nMax cpu time              12x  unlimited\n").has_value());
  EXPECT_FALSE(crpipe::parseProcLimits("Limit  x\nMax cpu time              12\n").has_value());
}
