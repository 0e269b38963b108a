// The library's one thread pool: started once, reused by every call of the CPU backend (which owns
// one), by the batched codec functions (a process-wide shared pool) and by tools that want the same
// threads (kvarn-eval). Decode steps issue many short parallel loops per token and layer, so
// threads are never started per call.
//
// Size: the constructor's count, else KVARN_CL_THREADS, else std::thread::hardware_concurrency().
// A pool that cannot start every thread it was asked for (a process or memory limit) keeps the
// threads that did start and says so in degraded_reason(); it never aborts the process. Counts
// above kMaxThreads, and a KVARN_CL_THREADS that is not an integer in [1, kMaxThreads], are
// refused with InvalidArgument.
//
// parallel_for may be called from several threads at once and from inside a body: a call that
// finds the pool busy runs its items on the calling thread, so nesting never deadlocks.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace kvarn_cl {

class ThreadPool {
 public:
  static constexpr unsigned kMaxThreads = 4096;

  // 0 = KVARN_CL_THREADS, else the machine's hardware threads.
  explicit ThreadPool(unsigned threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that run items, the calling thread included (>= 1).
  unsigned size() const noexcept;
  // The count asked for (after resolving 0), and why fewer started (empty when all did).
  unsigned requested() const noexcept;
  const std::string& degraded_reason() const noexcept;

  // Calls body(i) for every i in [0, n), handed out dynamically to at most max_threads threads
  // (0 = all of the pool); the caller works too. The first exception thrown by a body is
  // re-thrown here after every item has finished or been skipped.
  void parallel_for(std::size_t n, const std::function<void(std::size_t)>& body,
                    unsigned max_threads = 0);
  // body(begin, end) for contiguous chunks that cover [0, n), one chunk per thread used (at
  // most max_threads, 0 = all); the chunk boundaries depend only on n and the thread count.
  void parallel_ranges(std::size_t n, const std::function<void(std::size_t, std::size_t)>& body,
                       unsigned max_threads = 0);

  // The count that ThreadPool(0) resolves to: KVARN_CL_THREADS if set (InvalidArgument when it
  // is not an integer in [1, kMaxThreads]), else hardware_concurrency (1 if unknown).
  static unsigned default_size();
  // A process-wide pool of default_size() threads, started on first use.
  static ThreadPool& shared();

 private:
  // The threads, locks and the job being handed out (src/cpu/thread_pool.cpp): opaque, so that
  // this header carries no mutex, condition variable or thread.
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kvarn_cl
