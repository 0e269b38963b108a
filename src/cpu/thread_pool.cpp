// The persistent pool of include/kvarn_cl/thread_pool.hpp. Items are handed out one at a time
// under a mutex: every body this library gives the pool is a tile, a (sequence, head, split) work
// item or a chunk of rows, so the hand-out cost is small against the item.
#include "kvarn_cl/thread_pool.hpp"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <string>
#include <system_error>

#include "kvarn_cl/error.hpp"
#include "util/parse_int.hpp"

namespace kvarn_cl {
namespace {

// The pool whose worker is running on this thread (nullptr elsewhere): a parallel_for from inside
// a body runs inline instead of waiting for workers that are all busy with the outer loop.
thread_local const ThreadPool* tls_worker_of = nullptr;
// The pools whose parallel_for is running on this thread (as the caller): a call from inside one
// of its bodies runs inline.
thread_local std::vector<const ThreadPool*> tls_calling;

struct CallingScope {
  explicit CallingScope(const ThreadPool* p) { tls_calling.push_back(p); }
  ~CallingScope() { tls_calling.pop_back(); }
};

bool is_calling(const ThreadPool* p) {
  for (const ThreadPool* q : tls_calling)
    if (q == p) return true;
  return false;
}

unsigned checked_count(unsigned long long n, const std::string& what) {
  if (n == 0 || n > ThreadPool::kMaxThreads)
    throw InvalidArgument(what + " is " + std::to_string(n) + ", expected 1 to " +
                          std::to_string(ThreadPool::kMaxThreads) + " threads");
  return unsigned(n);
}

}  // namespace

unsigned ThreadPool::default_size() {
  if (const char* env = std::getenv("KVARN_CL_THREADS"))
    return unsigned(util::parse_int(env, 1, kMaxThreads, "KVARN_CL_THREADS (threads)"));
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : std::min(hw, kMaxThreads);
}

ThreadPool& ThreadPool::shared() {
  static ThreadPool pool(0);
  return pool;
}

ThreadPool::ThreadPool(unsigned threads) {
  requested_ = threads == 0 ? default_size() : checked_count(threads, "thread pool size");
  try {
    workers_.reserve(requested_ - 1);
    for (unsigned t = 1; t < requested_; ++t) workers_.emplace_back([this] { worker_loop(); });
  } catch (const std::system_error& e) {
    degraded_ = "started " + std::to_string(workers_.size() + 1) + " of " +
                std::to_string(requested_) + " threads: " + e.what();
  } catch (const std::bad_alloc&) {
    degraded_ = "started " + std::to_string(workers_.size() + 1) + " of " +
                std::to_string(requested_) + " threads: out of memory";
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run_items(const std::function<void(std::size_t)>& body, std::size_t n) {
  for (;;) {
    std::size_t i;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_ >= n) return;
      i = next_++;
    }
    try {
      body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_ = n;  // skip the remaining items: the call fails anyway
    }
  }
}

void ThreadPool::worker_loop() {
  tls_worker_of = this;
  unsigned long seen = 0;
  for (;;) {
    const std::function<void(std::size_t)>* body;
    std::size_t n;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (seats_ == 0 || body_ == nullptr) continue;
      --seats_;
      ++active_;
      body = body_;
      n = n_;
    }
    run_items(*body, n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --active_;
    }
    done_.notify_all();
  }
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& body,
                              unsigned max_threads) {
  if (n == 0) return;
  const unsigned limit = max_threads == 0 ? size() : std::min(max_threads, size());
  std::unique_lock<std::mutex> call(call_mutex_, std::defer_lock);
  const bool inline_only = workers_.empty() || n == 1 || limit <= 1 ||
                           tls_worker_of == this || is_calling(this) || !call.try_lock();
  if (inline_only) {
    for (std::size_t i = 0; i < n; ++i) body(i);
    return;
  }
  const CallingScope scope(this);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    n_ = n;
    next_ = 0;
    error_ = nullptr;
    seats_ = unsigned(std::min<std::size_t>(limit - 1, n - 1));
    ++generation_;
  }
  wake_.notify_all();
  run_items(body, n);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // Workers that wake late find no seat or no item and leave at once; wait for the busy ones.
    done_.wait(lock, [&] { return next_ >= n_ && active_ == 0; });
    body_ = nullptr;
    seats_ = 0;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

void ThreadPool::parallel_ranges(std::size_t n,
                                 const std::function<void(std::size_t, std::size_t)>& body,
                                 unsigned max_threads) {
  if (n == 0) return;
  const unsigned limit = max_threads == 0 ? size() : std::min(max_threads, size());
  const std::size_t chunks = std::min<std::size_t>(limit, n);
  parallel_for(
      chunks, [&](std::size_t c) { body(n * c / chunks, n * (c + 1) / chunks); }, limit);
}

}  // namespace kvarn_cl
