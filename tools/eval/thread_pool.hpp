// A persistent fork-join pool for the evaluation's matmuls and attention. Decode steps issue
// hundreds of small parallel loops per token, so threads are started once, not per loop.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kvarn_eval {

class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads);  // 0 = hardware_concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return unsigned(workers_.size()) + 1; }
  // Calls body(i) for every i in [0, n), items handed out dynamically; the caller works too.
  // The first exception thrown by a body is re-thrown here after all items finished.
  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& body);

 private:
  void worker_loop();
  void run_items();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::size_t)>* body_ = nullptr;
  std::size_t n_ = 0, next_ = 0, active_ = 0;
  unsigned long generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace kvarn_eval
