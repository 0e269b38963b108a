// How many threads a CPU call may use: the CPU backend's pool size (make_cpu_backend,
// BackendOptions) and the cap of the batched codec functions (codec.hpp). Its own header so that
// backend.hpp need not include the codec for it.
#pragma once

namespace kvarn_cl {

// 0 = the process-wide ThreadPool::shared() (KVARN_CL_THREADS, else the machine's hardware
// threads); N = N threads.
struct CpuThreads {
  unsigned count = 0;
};

}  // namespace kvarn_cl
