// The /proc parsers of the task state dump, on canned kernel text.
#include "collector/task/task_proc.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

namespace crpipe::collector::task {
namespace {

TEST(TaskProc, StatusGivesCredsUmaskAndSeccomp) {
  const char* text =
      "Name:\tcat\nUmask:\t0027\nState:\tS (sleeping)\nTgid:\t42\n"
      "Uid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\nGroups:\t4 24 27 \n"
      "CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000000400\n"
      "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n";
  auto st = parseTaskStatus(text);
  ASSERT_TRUE(st) << st.error().str();
  EXPECT_EQ(st->umask, 027u);
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->creds.uid(), 1000u);
  EXPECT_EQ(st->creds.euid(), 1001u);
  EXPECT_EQ(st->creds.suid(), 1002u);
  EXPECT_EQ(st->creds.fsuid(), 1003u);
  EXPECT_EQ(st->creds.fsgid(), 103u);
  ASSERT_EQ(st->creds.groups_size(), 3);
  EXPECT_EQ(st->creds.groups(2), 27u);
  ASSERT_EQ(st->creds.cap_prm_size(), 2);
  EXPECT_EQ(st->creds.cap_prm(0), 0xffffffffu);  // low word first
  EXPECT_EQ(st->creds.cap_prm(1), 0x1ffu);
  EXPECT_EQ(st->creds.cap_eff(0), 0x400u);
  EXPECT_EQ(st->creds.no_new_privs(), 1u);
  EXPECT_EQ(st->seccomp, 0);
}

TEST(TaskProc, StatusWithoutCredsIsRefused) {
  EXPECT_FALSE(parseTaskStatus("Name:\tx\nUmask:\t0022\n"));
}

TEST(TaskProc, MmBoundsFromStatWithParenthesesInComm) {
  // 52 fields; comm holds ") (" to make sure fields are counted from the last ')'.
  std::string stat = "123 (a) (b) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 100 "
                     "1000 10 18446744073709551615 4096 8192 140000 0 0 0 0 0 0 0 0 0 17 0 0 "
                     "0 0 0 0 12288 16384 20480 140100 140200 140200 140300 0\n";
  auto b = parseMmBounds(stat);
  ASSERT_TRUE(b) << b.error().str();
  EXPECT_EQ(b->startCode, 4096u);
  EXPECT_EQ(b->endCode, 8192u);
  EXPECT_EQ(b->startStack, 140000u);
  EXPECT_EQ(b->startData, 12288u);
  EXPECT_EQ(b->endData, 16384u);
  EXPECT_EQ(b->startBrk, 20480u);
  EXPECT_EQ(b->argStart, 140100u);
  EXPECT_EQ(b->envEnd, 140300u);
  EXPECT_EQ(b->exitCode, 0u);
}

TEST(TaskProc, SmapsMappingsPathsAndFlags) {
  const char* text =
      "55d0c0000000-55d0c0002000 r--p 00000000 08:01 1234   /usr/bin/my prog\n"
      "Size:                  8 kB\n"
      "Rss:                   8 kB\n"
      "VmFlags: rd mr mw me dw sd \n"
      "7f0000000000-7f0000100000 rw-s 00000000 00:01 5678   /dev/zero (deleted)\n"
      "Size:               1024 kB\n"
      "VmFlags: rd wr sh mr mw me ms sd dc \n"
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]\n"
      "VmFlags: rd wr mr mw me gd ac wf \n"
      "7f1000000000-7f1000001000 ---p 00000000 00:00 0 \n"
      "VmFlags: mr mw me \n";
  auto v = parseSmaps(text);
  ASSERT_TRUE(v) << v.error().str();
  ASSERT_EQ(v->size(), 4u);
  EXPECT_EQ((*v)[0].start, 0x55d0c0000000u);
  EXPECT_EQ((*v)[0].path, "/usr/bin/my prog");
  EXPECT_EQ((*v)[0].prot, static_cast<uint32_t>(PROT_READ));
  EXPECT_EQ((*v)[0].inode, 1234u);
  EXPECT_EQ((*v)[0].devMajor, 8u);
  EXPECT_TRUE((*v)[1].shared);
  EXPECT_EQ((*v)[1].path, "/dev/zero (deleted)");
  EXPECT_TRUE((*v)[1].hasFlag("dc"));
  EXPECT_EQ((*v)[2].path, "[stack]");
  EXPECT_TRUE((*v)[2].hasFlag("gd"));
  EXPECT_TRUE((*v)[2].hasFlag("wf"));
  EXPECT_EQ((*v)[3].prot, 0u);
  EXPECT_EQ((*v)[3].path, "");
}

}  // namespace
}  // namespace crpipe::collector::task
