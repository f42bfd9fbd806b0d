#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

#include "common/result.h"

// Reading and writing another process's memory without stopping it per page.
namespace crpipe::inject {

// process_vm_readv/writev of exactly `len` bytes at `addr`; a short transfer is an error
// naming the address it stopped at.
Status readRemote(pid_t pid, uint64_t addr, void* buf, size_t len);
Status writeRemote(pid_t pid, uint64_t addr, const void* buf, size_t len);

// One process_vm_readv of many remote ranges into one local buffer, split into calls of at
// most IOV_MAX ranges. Returns the bytes read; fewer than asked means the range holding
// byte `returned` could not be read (the kernel stops at the first failing range).
Result<size_t> readRemoteV(pid_t pid, std::span<const iovec> remote, void* buf, size_t len);

// The message for a readRemoteV() that stopped short after `got` bytes:
// "pid P: cannot read the page at 0xADDR (process_vm_readv)", the address found in `remote`.
std::string shortReadMessage(pid_t pid, std::span<const iovec> remote, size_t got);

}  // namespace crpipe::inject
