/* The FPU/SSE/AVX state of a thread (issue 4: "FPU/SSE/AVX state (xstate)"): a thread loads
 * known values into xmm0-15 (ymm0-15 where the CPU has AVX; zmm16, zmm31 and the mask k1
 * where it has AVX-512F), an MXCSR with round-toward-zero and flush-to-zero, and an x87
 * control word with single precision, then blocks in read() on a pipe from its own asm, so
 * no compiled code touches those registers. The dump finds it in that syscall; after
 * restore the read returns (the main thread writes a byte) and the thread stores every
 * register back; each must hold what was loaded. */
#include "wl.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

static int wake[2];
static uint8_t in[16][32] __attribute__((aligned(64)));
static uint8_t out[16][32] __attribute__((aligned(64)));
static uint8_t zin[2][64] __attribute__((aligned(64)));
static uint8_t zout[2][64] __attribute__((aligned(64)));
static uint16_t kin = 0xa5f0, kout;
static uint32_t mxcsr_in = 0x1f80 | (3u << 13) | (1u << 15), mxcsr_out;
static uint16_t fcw_in = 0x037f & ~0x0300, fcw_out; /* precision control: single */
static int have_avx, have_avx512;

/* ymm0-15 from in[] and back to out[] (asm text), and what they clobber. */
#define YMM_LOAD                                                              \
  "vmovdqu 0(%[i]), %%ymm0\n\tvmovdqu 32(%[i]), %%ymm1\n\t"                      \
  "vmovdqu 64(%[i]), %%ymm2\n\tvmovdqu 96(%[i]), %%ymm3\n\t"                     \
  "vmovdqu 128(%[i]), %%ymm4\n\tvmovdqu 160(%[i]), %%ymm5\n\t"                   \
  "vmovdqu 192(%[i]), %%ymm6\n\tvmovdqu 224(%[i]), %%ymm7\n\t"                   \
  "vmovdqu 256(%[i]), %%ymm8\n\tvmovdqu 288(%[i]), %%ymm9\n\t"                   \
  "vmovdqu 320(%[i]), %%ymm10\n\tvmovdqu 352(%[i]), %%ymm11\n\t"                 \
  "vmovdqu 384(%[i]), %%ymm12\n\tvmovdqu 416(%[i]), %%ymm13\n\t"                 \
  "vmovdqu 448(%[i]), %%ymm14\n\tvmovdqu 480(%[i]), %%ymm15\n\t"
#define YMM_STORE                                                             \
  "vmovdqu %%ymm0, 0(%[o])\n\tvmovdqu %%ymm1, 32(%[o])\n\t"                      \
  "vmovdqu %%ymm2, 64(%[o])\n\tvmovdqu %%ymm3, 96(%[o])\n\t"                     \
  "vmovdqu %%ymm4, 128(%[o])\n\tvmovdqu %%ymm5, 160(%[o])\n\t"                   \
  "vmovdqu %%ymm6, 192(%[o])\n\tvmovdqu %%ymm7, 224(%[o])\n\t"                   \
  "vmovdqu %%ymm8, 256(%[o])\n\tvmovdqu %%ymm9, 288(%[o])\n\t"                   \
  "vmovdqu %%ymm10, 320(%[o])\n\tvmovdqu %%ymm11, 352(%[o])\n\t"                 \
  "vmovdqu %%ymm12, 384(%[o])\n\tvmovdqu %%ymm13, 416(%[o])\n\t"                 \
  "vmovdqu %%ymm14, 448(%[o])\n\tvmovdqu %%ymm15, 480(%[o])\n\t"
#define YMM_CLOBBERS                                                             \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
      "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
static long read_ret;

/* Only this one may use AVX-512: the compiler is told so for it alone. */
__attribute__((target("avx512f"), noinline)) static long keep_avx512(char* bytep) {
  long ret;
  __asm__ volatile(
        "ldmxcsr %[mx]\n\tfldcw %[cw]\n\t"
        YMM_LOAD
        "vmovdqu64 0(%[zi]), %%zmm16\n\tvmovdqu64 64(%[zi]), %%zmm31\n\t"
        "kmovw %[k], %%k1\n\t"
        "syscall\n\t"
        YMM_STORE
        "vmovdqu64 %%zmm16, 0(%[zo])\n\tvmovdqu64 %%zmm31, 64(%[zo])\n\t"
        "kmovw %%k1, %[ko]\n\t"
        "stmxcsr %[mxo]\n\tfnstcw %[cwo]\n\t"
        : "=a"(ret), [mxo] "=m"(mxcsr_out), [cwo] "=m"(fcw_out), [ko] "=m"(kout)
        : "a"((long)SYS_read), "D"((long)wake[0]), "S"(bytep), "d"(1L), [i] "r"(in),
          [o] "r"(out), [zi] "r"(zin), [zo] "r"(zout), [mx] "m"(mxcsr_in), [cw] "m"(fcw_in),
          [k] "m"(kin)
        : "rcx", "r11", "memory", YMM_CLOBBERS,
          "xmm16", "xmm31", "k1");
  return ret;
}

static void* keeper(void* arg) {
  (void)arg;
  char byte;
  long ret;
  if (have_avx512) {
    ret = keep_avx512(&byte);
  } else if (have_avx) {
    __asm__ volatile(
        "ldmxcsr %[mx]\n\tfldcw %[cw]\n\t"
        YMM_LOAD
        "syscall\n\t"
        YMM_STORE
        "stmxcsr %[mxo]\n\tfnstcw %[cwo]\n\t"
        : "=a"(ret), [mxo] "=m"(mxcsr_out), [cwo] "=m"(fcw_out)
        : "a"((long)SYS_read), "D"((long)wake[0]), "S"(&byte), "d"(1L), [i] "r"(in),
          [o] "r"(out), [mx] "m"(mxcsr_in), [cw] "m"(fcw_in)
        : "rcx", "r11", "memory", YMM_CLOBBERS);
  } else {
    /* SSE2 only: the low 128 bits of each register. */
    __asm__ volatile(
        "ldmxcsr %[mx]\n\tfldcw %[cw]\n\t"
        "movdqu 0(%[i]), %%xmm0\n\tmovdqu 32(%[i]), %%xmm1\n\t"
        "movdqu 256(%[i]), %%xmm8\n\tmovdqu 480(%[i]), %%xmm15\n\t"
        "syscall\n\t"
        "movdqu %%xmm0, 0(%[o])\n\tmovdqu %%xmm1, 32(%[o])\n\t"
        "movdqu %%xmm8, 256(%[o])\n\tmovdqu %%xmm15, 480(%[o])\n\t"
        "stmxcsr %[mxo]\n\tfnstcw %[cwo]\n\t"
        : "=a"(ret), [mxo] "=m"(mxcsr_out), [cwo] "=m"(fcw_out)
        : "a"((long)SYS_read), "D"((long)wake[0]), "S"(&byte), "d"(1L), [i] "r"(in),
          [o] "r"(out), [mx] "m"(mxcsr_in), [cw] "m"(fcw_in)
        : "rcx", "r11", "memory", "xmm0", "xmm1", "xmm8", "xmm15");
  }
  read_ret = ret;
  return NULL;
}

int main(void) {
  wl_init();
  __builtin_cpu_init();
  have_avx = !!__builtin_cpu_supports("avx");
  have_avx512 = have_avx && !!__builtin_cpu_supports("avx512f");
  for (int r = 0; r < 16; ++r)
    for (int b = 0; b < 32; ++b) in[r][b] = (uint8_t)(r * 37 + b * 11 + 1);
  for (int r = 0; r < 2; ++r)
    for (int b = 0; b < 64; ++b) zin[r][b] = (uint8_t)(r * 91 + b * 7 + 3);
  WL_MUST(pipe(wake) == 0);
  pthread_t t;
  WL_MUST(pthread_create(&t, NULL, keeper, NULL) == 0);
  /* READY once the thread sits in its read (its state shows S with the pipe's wait). */
  usleep(50 * 1000);
  printf("READY {\"pid\": %d, \"avx\": %d, \"avx512\": %d}\n", getpid(), have_avx, have_avx512);
  wl_wait_verify();
  WL_MUST(write(wake[1], "x", 1) == 1);
  WL_MUST(pthread_join(t, NULL) == 0);
  WL_CHECK(read_ret == 1, "the thread's read returned %ld", read_ret);
  if (have_avx) {
    for (int r = 0; r < 16; ++r)
      WL_CHECK(memcmp(in[r], out[r], 32) == 0, "ymm%d changed", r);
  } else {
    int regs[] = {0, 1, 8, 15};
    for (int k = 0; k < 4; ++k)
      WL_CHECK(memcmp(in[regs[k]], out[regs[k]], 16) == 0, "xmm%d changed", regs[k]);
  }
  if (have_avx512) {
    WL_CHECK(memcmp(zin[0], zout[0], 64) == 0, "zmm16 changed");
    WL_CHECK(memcmp(zin[1], zout[1], 64) == 0, "zmm31 changed");
    WL_CHECK(kout == kin, "k1 %#x, was %#x", kout, kin);
  }
  WL_CHECK(mxcsr_out == mxcsr_in, "MXCSR %#x, was %#x", mxcsr_out, mxcsr_in);
  WL_CHECK(fcw_out == fcw_in, "x87 control word %#x, was %#x", fcw_out, fcw_in);
  return wl_finish();
}
