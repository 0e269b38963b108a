// kvarn-eval runs its matmuls and attention on the library's persistent pool
// (include/kvarn_cl/thread_pool.hpp), the one thread pool of the tree.
#pragma once

#include "kvarn_cl/thread_pool.hpp"

namespace kvarn_eval {
using ThreadPool = kvarn_cl::ThreadPool;
}  // namespace kvarn_eval
