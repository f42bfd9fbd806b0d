#pragma once

#include <functional>
#include <string>

#include "collector/kinds/unix_embryo_bpf_abi.h"
#include "common/result.h"

namespace crpipe::collector {

// Lets the unix embryo iterator read paged skb data (page fragments: the bulk of any write
// larger than ~3.5 KiB). A fragment is known to BPF only as a struct page pointer, and turning
// that into an address needs two KASLR-randomized bases the kernel exports to nobody.
// So we hand the iterator a page whose frame number we know: we vmsplice() an anonymous page
// of ours, filled with a random cookie, into a pipe and splice() it into a unix socket pair
// of our own -- the skb's first fragment is then that very page -- and read its pfn from
// /proc/self/pagemap. One CRP_MODE_CALIB pass (`pass`) derives the bases from it in BPF.
// Returns "" on success, else why paged data cannot be read (x86-64 only; pagemap frame
// numbers and /proc/iomem addresses need CAP_SYS_ADMIN). Must run in the thread, and so the
// network namespace, that runs the dump passes: the probe socket has to be iterated.
std::string calibrateEmbryoIterator(
    const std::function<Result<std::string>(const crp_emb_config&)>& pass);

}  // namespace crpipe::collector
