#pragma once

#include <sys/types.h>

#include "collector/task/thread_state.h"
#include "common/result.h"
#include "protos/core.pb.h"

namespace crpipe::collector::task {

// The thread parts of a CoreEntry: registers (thread_info) and thread_core.
// Registers are recorded as the thread must run when restored: an interrupted restartable
// syscall rewound to run again, and a thread inside an rseq critical section moved to the
// section's abort handler (what the kernel does to a preempted critical section).
Result<images::CoreEntry> threadCore(pid_t pid, const ThreadState& t);

// Adds the process-wide parts (tc) to the leader's CoreEntry.
Status addTaskCore(pid_t pid, const ThreadState& leader, const ProcessState& p,
                   images::CoreEntry& core);

}  // namespace crpipe::collector::task
