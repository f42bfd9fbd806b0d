# Turns the compiled BPF object into a C++ source with its bytes, so the collector carries
# the iterator program inside itself (opened with bpf_object__open_mem at run time).
# Usage: cmake -DIN=<unix_embryo_bpf.bpf.o> -DOUT=<file.cc> [-DSYMBOL=kName] -P unix_embryo_embed.cmake
# (SYMBOL names the array and, with "Size" appended, its length; kUnixEmbryoBpfObject by default.)
if(NOT SYMBOL)
  set(SYMBOL kUnixEmbryoBpfObject)
endif()
get_filename_component(src "${IN}" NAME_WE)
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR size "${digits} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}.tmp"
"// Generated at build time from ${src}.bpf.c; do not edit.
#include <cstddef>

namespace crpipe::collector {
extern const unsigned char ${SYMBOL}[];
extern const std::size_t ${SYMBOL}Size;
// libelf reads the ELF headers in place: keep them aligned.
alignas(8) const unsigned char ${SYMBOL}[] = {
${bytes}
};
const std::size_t ${SYMBOL}Size = ${size};
}  // namespace crpipe::collector
")
file(RENAME "${OUT}.tmp" "${OUT}")
