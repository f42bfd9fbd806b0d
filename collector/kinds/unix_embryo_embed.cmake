# Turns the compiled BPF object into a C++ source with its bytes, so the collector carries
# the iterator program inside itself (opened with bpf_object__open_mem at run time).
# Usage: cmake -DIN=<unix_embryo_bpf.bpf.o> -DOUT=<file.cc> -P unix_embryo_embed.cmake
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR size "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}.tmp"
"// Generated at build time from unix_embryo_bpf.bpf.c; do not edit.
#include <cstddef>

namespace crpipe::collector {
extern const unsigned char kUnixEmbryoBpfObject[];
extern const std::size_t kUnixEmbryoBpfObjectSize;
// libelf reads the ELF headers in place: keep them aligned.
alignas(8) const unsigned char kUnixEmbryoBpfObject[] = {
${bytes}
};
const std::size_t kUnixEmbryoBpfObjectSize = ${size};
}  // namespace crpipe::collector
")
file(RENAME "${OUT}.tmp" "${OUT}")
