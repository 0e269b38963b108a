// A small fork-join helper for the CPU backend: splits [0, n) into contiguous chunks over threads.
// An exception thrown by any chunk is re-thrown in the caller after all threads have joined.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace kvarn_cl::detail {

inline unsigned resolve_threads(unsigned requested) {
  if (requested != 0) return requested;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : hw;
}

// body(begin, end) is called for disjoint chunks that cover [0, n).
template <typename Body>
void parallel_for(std::size_t n, unsigned threads, Body&& body) {
  const std::size_t workers = std::min<std::size_t>(resolve_threads(threads), n);
  if (workers <= 1) {
    if (n > 0) body(std::size_t(0), n);
    return;
  }
  std::exception_ptr first_error;
  std::mutex error_mutex;
  std::vector<std::thread> pool;
  pool.reserve(workers);
  for (std::size_t w = 0; w < workers; ++w) {
    const std::size_t begin = n * w / workers;
    const std::size_t end = n * (w + 1) / workers;
    pool.emplace_back([&, begin, end] {
      try {
        body(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!first_error) first_error = std::current_exception();
      }
    });
  }
  for (auto& t : pool) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace kvarn_cl::detail
