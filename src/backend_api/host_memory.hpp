// How many bytes this process may still allocate on the host: the machine's physical memory, and
// the process's own limits (RLIMIT_AS and RLIMIT_DATA: `ulimit -v`, `prlimit --as`, a container's
// setting) less what the process already uses. The CPU backend's memory_capacity(), and an
// OpenCL backend's whose device is the host CPU (PoCL allocates its buffers in this process, so a
// cache within the device's reported memory but past the process's limit used to be accepted
// and then abort inside PoCL at its first append).
#pragma once

#include <cstddef>

namespace kvarn_cl {

// 0 when nothing is known (the caller then checks nothing).
std::size_t host_memory_capacity() noexcept;

}  // namespace kvarn_cl
