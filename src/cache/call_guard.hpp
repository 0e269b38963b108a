// Misuse guard of KVCache (a cache is not thread-safe): every public call holds a CallGuard for
// its scope. `users` counts readers inside const calls (> 0) or marks a writer inside a mutating
// call (-1). A call that overlaps a writer, or a writer that overlaps anything, throws
// InvalidArgument instead of racing on the state. One atomic operation per call.
#pragma once

#include <atomic>
#include <string>

#include "cache/error_message.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cache {

class CallGuard {
 public:
  CallGuard(std::atomic<int>& users, std::atomic<const char*>& writer, const char* fn, bool writes)
      : users_(users), writer_(writer), writes_(writes) {
    if (writes) {
      int expected = 0;
      if (!users_.compare_exchange_strong(expected, -1, std::memory_order_acquire))
        fail(fn, expected);
      writer_.store(fn, std::memory_order_relaxed);
    } else {
      int n = users_.load(std::memory_order_relaxed);
      do {
        if (n < 0) fail(fn, n);
      } while (!users_.compare_exchange_weak(n, n + 1, std::memory_order_acquire));
    }
  }
  ~CallGuard() {
    if (writes_) {
      writer_.store(nullptr, std::memory_order_relaxed);
      users_.store(0, std::memory_order_release);
    } else {
      users_.fetch_sub(1, std::memory_order_release);
    }
  }
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;

 private:
  [[noreturn]] void fail(const char* fn, int state) const {
    const char* other = writer_.load(std::memory_order_relaxed);
    throw InvalidArgument(
        message("KVCache::", fn, " called while another thread is inside ",
                state < 0 && other ? message("KVCache::", other) : std::string("a call"),
                " on the same cache: a KVCache must not be used from two threads at "
                "once (use one cache per thread, or a lock)"));
  }
  std::atomic<int>& users_;
  std::atomic<const char*>& writer_;
  bool writes_;
};

}  // namespace kvarn_cl::cache

// Opens the guard of a public KVCache member `fn` (writes: a mutating call).
#define KVARN_CL_CACHE_CALL(fn, writes) \
  const ::kvarn_cl::cache::CallGuard guard_(impl_->users, impl_->writer, fn, writes)
