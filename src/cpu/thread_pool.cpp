// The persistent pool of include/kvarn_cl/thread_pool.hpp. Items are handed out one at a time
// under a mutex: every body this library gives the pool is a tile, a (sequence, head, split) work
// item or a chunk of rows, so the hand-out cost is small against the item.
#include "kvarn_cl/thread_pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "kvarn_cl/error.hpp"
#include "util/parse_int.hpp"

namespace kvarn_cl {

struct ThreadPool::State {
  void worker_loop();
  void run_items(const std::function<void(std::size_t)>& body, std::size_t n);

  std::vector<std::thread> workers;
  unsigned requested = 1;
  std::string degraded;

  std::mutex call_mutex;  // one parallel_for at a time uses the workers
  std::mutex mutex;
  std::condition_variable wake, done;
  const std::function<void(std::size_t)>* body = nullptr;
  std::size_t n = 0, next = 0;
  unsigned active = 0, seats = 0;  // workers inside the job, workers still allowed to join
  unsigned long generation = 0;
  bool stop = false;
  std::exception_ptr error;
};

namespace {

// The pool whose worker is running on this thread (nullptr elsewhere): a parallel_for from inside
// a body runs inline instead of waiting for workers that are all busy with the outer loop.
thread_local const void* tls_worker_of = nullptr;
// The pools whose parallel_for is running on this thread (as the caller): a call from inside one
// of its bodies runs inline.
thread_local std::vector<const void*> tls_calling;

struct CallingScope {
  explicit CallingScope(const void* p) { tls_calling.push_back(p); }
  ~CallingScope() { tls_calling.pop_back(); }
};

bool is_calling(const void* p) {
  for (const void* q : tls_calling)
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

ThreadPool::ThreadPool(unsigned threads) : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.requested = threads == 0 ? default_size() : checked_count(threads, "thread pool size");
  State* const state = state_.get();  // workers use the state, whose address never changes
  try {
    s.workers.reserve(s.requested - 1);
    for (unsigned t = 1; t < s.requested; ++t)
      s.workers.emplace_back([state] { state->worker_loop(); });
  } catch (const std::system_error& e) {
    s.degraded = "started " + std::to_string(s.workers.size() + 1) + " of " +
                 std::to_string(s.requested) + " threads: " + e.what();
  } catch (const std::bad_alloc&) {
    s.degraded = "started " + std::to_string(s.workers.size() + 1) + " of " +
                 std::to_string(s.requested) + " threads: out of memory";
  }
}

ThreadPool::~ThreadPool() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stop = true;
  }
  s.wake.notify_all();
  for (auto& w : s.workers) w.join();
}

unsigned ThreadPool::size() const noexcept { return unsigned(state_->workers.size()) + 1; }
unsigned ThreadPool::requested() const noexcept { return state_->requested; }
const std::string& ThreadPool::degraded_reason() const noexcept { return state_->degraded; }

void ThreadPool::State::run_items(const std::function<void(std::size_t)>& item_body,
                                  std::size_t items) {
  for (;;) {
    std::size_t i;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (next >= items) return;
      i = next++;
    }
    try {
      item_body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (!error) error = std::current_exception();
      next = items;  // skip the remaining items: the call fails anyway
    }
  }
}

void ThreadPool::State::worker_loop() {
  tls_worker_of = this;
  unsigned long seen = 0;
  for (;;) {
    const std::function<void(std::size_t)>* job;
    std::size_t items;
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] { return stop || generation != seen; });
      if (stop) return;
      seen = generation;
      if (seats == 0 || body == nullptr) continue;
      --seats;
      ++active;
      job = body;
      items = n;
    }
    run_items(*job, items);
    {
      std::lock_guard<std::mutex> lock(mutex);
      --active;
    }
    done.notify_all();
  }
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t)>& body,
                              unsigned max_threads) {
  if (n == 0) return;
  const unsigned limit = max_threads == 0 ? size() : std::min(max_threads, size());
  State& s = *state_;
  std::unique_lock<std::mutex> call(s.call_mutex, std::defer_lock);
  const bool inline_only = s.workers.empty() || n == 1 || limit <= 1 || tls_worker_of == &s ||
                           is_calling(&s) || !call.try_lock();
  if (inline_only) {
    for (std::size_t i = 0; i < n; ++i) body(i);
    return;
  }
  const CallingScope scope(&s);
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.body = &body;
    s.n = n;
    s.next = 0;
    s.error = nullptr;
    s.seats = unsigned(std::min<std::size_t>(limit - 1, n - 1));
    ++s.generation;
  }
  s.wake.notify_all();
  s.run_items(body, n);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    // Workers that wake late find no seat or no item and leave at once; wait for the busy ones.
    s.done.wait(lock, [&] { return s.next >= s.n && s.active == 0; });
    s.body = nullptr;
    s.seats = 0;
    err = s.error;
    s.error = nullptr;
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
