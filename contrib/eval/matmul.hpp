// Y = X · Wᵀ for row-major X (M×K) and W (N×K), the layout of GGUF weight matrices (each output
// feature is one contiguous row of K inputs). Blocked dot-product kernel with GCC vector types,
// spread over the thread pool by panels of output features.
#pragma once

#include <cstddef>

#include "thread_pool.hpp"

namespace kvarn_eval {

// y: M×N, row-major. Any K works; multiples of 16 take the vector path.
void matmul_xwt(ThreadPool& pool, const float* x, const float* w, float* y, std::size_t M,
                std::size_t N, std::size_t K);

}  // namespace kvarn_eval
