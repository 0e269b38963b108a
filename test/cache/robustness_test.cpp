// Robustness of KVCache (docs/API.md, "Robustness"): non-finite or out-of-range device-resident
// input is refused when it enters the cache (sink or tail) on every backend, a cache that cannot
// fit is refused at construction, and a cache used from two threads at once reports the misuse.
#include <gtest/gtest.h>

#include <atomic>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "cache/cache_fixture.hpp"
#include "kvarn_cl/cache.hpp"

using namespace kvarn_cl;
using namespace kvarn_cl::test;

namespace {

std::unique_ptr<Buffer> to_device(Backend& be, const std::vector<float>& rows) {
  auto b = be.allocate(rows.size() * 4);
  be.write(*b, 0, rows.data(), rows.size() * 4);
  return b;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace

// A NaN in device-resident keys that would land in the sink used to be stored: every later
// attend returned NaN with an OK status. Now the append is refused and nothing changes.
TEST(Robustness, DeviceInputWithNaNIsRefusedBeforeTheSink) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    const int D = 64, Hk = 2, Hq = 4;
    KVCache cache(small_config(nb.backend, Preset::k4v2_g64, D, 1, Hk, 1, 1024));
    const SeqId id = cache.add_sequence();
    Backend& be = *nb.backend;
    auto k = kv_rows(10, Hk, D, 1), v = kv_rows(10, Hk, D, 2);
    auto bad = k;
    bad[(3 * std::size_t(Hk) + 1) * D + 5] = std::nanf("");  // token 3, head 1
    auto kb = to_device(be, bad), vb = to_device(be, v);
    expect_error<NonFiniteInput>(
        [&] { cache.append(0, {id}, {10}, *kb, *vb, ElementType::f32, AppendMode::commit); },
        "token 3, head 1");
    EXPECT_EQ(cache.length(id, 0), 0);
    // The same rows without the NaN go in, and attention over them is finite.
    auto kg = to_device(be, k);
    cache.append(0, {id}, {10}, *kg, *vb, ElementType::f32, AppendMode::commit);
    EXPECT_EQ(cache.length(id, 0), 10);
    const auto q = kv_rows(1, Hq, D, 3);
    std::vector<float> out(q.size());
    cache.attend(0, {id}, Hq, q.data(), out.data());
    EXPECT_TRUE(all_finite(out));
  }
}

// A NaN (or a value whose rotation overflows fp16) in device-resident values that would land in
// the tail used to be stored, and then every append that completed its tile failed forever.
TEST(Robustness, DeviceInputOutOfRangeIsRefusedBeforeTheTail) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    const int D = 64, Hk = 2, Hq = 4, G = 64;
    KVCache cache(small_config(nb.backend, Preset::k4v2_g64, D, 1, Hk, 1, 2048));
    const SeqId id = cache.add_sequence();
    Backend& be = *nb.backend;
    auto k0 = kv_rows(G + 5, Hk, D, 4), v0 = kv_rows(G + 5, Hk, D, 5);
    auto kb0 = to_device(be, k0), vb0 = to_device(be, v0);
    cache.append(0, {id}, {G + 5}, *kb0, *vb0, ElementType::f32, AppendMode::commit);  // sink + 5

    auto k1 = kv_rows(10, Hk, D, 6), v1 = kv_rows(10, Hk, D, 7);
    for (const float poison : {std::nanf(""), INFINITY, 1.0e6f}) {  // 1e6: finite, too large
      SCOPED_TRACE(poison);
      auto bad = v1;
      bad[(2 * std::size_t(Hk) + 0) * D + 9] = poison;  // token 2, head 0
      auto kb = to_device(be, k1), vb = to_device(be, bad);
      expect_error<NonFiniteInput>(
          [&] { cache.append(0, {id}, {10}, *kb, *vb, ElementType::f32, AppendMode::commit); },
          "token 2, head 0");
      EXPECT_EQ(cache.length(id, 0), G + 5);
    }
    // Later appends that complete tiles still work: nothing bad was kept in the tail.
    auto k2 = kv_rows(3 * G, Hk, D, 8), v2 = kv_rows(3 * G, Hk, D, 9);
    auto kb2 = to_device(be, k2), vb2 = to_device(be, v2);
    cache.append(0, {id}, {3 * G}, *kb2, *vb2, ElementType::f32, AppendMode::commit);
    EXPECT_EQ(cache.quantized_tiles(id, 0), 3);
    const auto q = kv_rows(1, Hq, D, 10);
    std::vector<float> out(q.size());
    cache.attend(0, {id}, Hq, q.data(), out.data());
    EXPECT_TRUE(all_finite(out));
  }
}

// Host rows get the same bound: a finite row whose rotation could exceed the codec's range is
// refused at append (it used to be accepted up to L2 norm 65504, and its tile then held an
// infinite zero point or failed to quantize).
TEST(Robustness, HostRowsBeyondTheCodecBoundAreRefused) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    const int D = 64, Hk = 1;
    KVCache cache(small_config(nb.backend, Preset::k4v2_g64, D, 1, Hk, 1, 1024));
    const SeqId id = cache.add_sequence();
    auto k = kv_rows(4, Hk, D, 11), v = kv_rows(4, Hk, D, 12);
    k[std::size_t(2) * D] = 60000.0f;  // L2 norm > kMaxRotatedMagnitude, < 65504
    expect_error<NonFiniteInput>([&] { cache.append(0, {id}, {4}, k.data(), v.data()); },
                                 "overflow fp16");
    EXPECT_EQ(cache.length(id, 0), 0);
  }
}

// A cache whose pools cannot fit used to be created "ok" and die later (host OOM kill, or PoCL
// aborting on a later layer's append). Its total size is now checked before any allocation.
TEST(Robustness, CacheThatCannotFitIsRefusedAtConstruction) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    ASSERT_GT(nb.backend->memory_capacity(), 0u);
    CacheConfig c = small_config(nb.backend, Preset::k4v2_g128, 128, INT_MAX, 8, 4, 4096);
    expect_error<OutOfMemory>([&] { KVCache x(c); }, "layers");
    // Each pool alone fits a single allocation, but all layers together exceed the memory.
    c = small_config(nb.backend, Preset::k4v2_g128, 128, 1, 8, 1, 1 << 16);
    const MemoryReport one = KVCache(c).memory_report();
    c.num_layers = int(nb.backend->memory_capacity() / (one.records + one.sink + one.tail)) + 2;
    expect_error<OutOfMemory>([&] { KVCache x(c); }, "num_layers");
  }
}

namespace {

// A CPU backend whose rotate() can be held inside, to overlap two cache calls deterministically.
class HoldingBackend final : public Backend {
 public:
  explicit HoldingBackend(std::shared_ptr<Backend> inner) : inner_(std::move(inner)) {}
  void hold_next_rotate() { hold_ = true; }
  void wait_until_held() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return inside_; });
  }
  void release() {
    std::lock_guard<std::mutex> l(m_);
    released_ = true;
    cv_.notify_all();
  }

  std::string name() const override { return inner_->name(); }
  BackendKind kind() const noexcept override { return inner_->kind(); }
  std::unique_ptr<Buffer> allocate(std::size_t b) override { return inner_->allocate(b); }
  void write(Buffer& d, std::size_t o, const void* s, std::size_t b) override {
    inner_->write(d, o, s, b);
  }
  void read(const Buffer& s, std::size_t o, void* d, std::size_t b) override {
    inner_->read(s, o, d, b);
  }
  void copy(const Buffer& s, std::size_t so, Buffer& d, std::size_t dof, std::size_t b) override {
    inner_->copy(s, so, d, dof, b);
  }
  void rotate(const CodecParams& p, const Buffer& in, ElementType t, std::size_t rows, Buffer& out,
              std::size_t out_row) override {
    if (hold_.exchange(false)) {
      std::unique_lock<std::mutex> l(m_);
      inside_ = true;
      cv_.notify_all();
      cv_.wait(l, [&] { return released_; });
    }
    inner_->rotate(p, in, t, rows, out, out_row);
  }
  void quantize(const CodecParams& p, const Buffer& k, const Buffer& v,
                const std::vector<QuantizeJob>& jobs, Buffer& r) override {
    inner_->quantize(p, k, v, jobs, r);
  }
  void dequantize(const CodecParams& p, const Buffer& r, const std::vector<std::uint32_t>& ids,
                  Frame f, Buffer& k, Buffer& v) override {
    inner_->dequantize(p, r, ids, f, k, v);
  }
  void attend(const AttendArgs& a) override { inner_->attend(a); }
  void copy_rows(const Buffer& s, Buffer& d, const std::vector<RowRun>& runs,
                 std::size_t rb) override {
    inner_->copy_rows(s, d, runs, rb);
  }
  void attend_fp16(const AttendFp16Args& a) override { inner_->attend_fp16(a); }
  std::size_t memory_capacity() const noexcept override { return inner_->memory_capacity(); }

 private:
  std::shared_ptr<Backend> inner_;
  std::atomic<bool> hold_{false};
  std::mutex m_;
  std::condition_variable cv_;
  bool inside_ = false, released_ = false;
};

}  // namespace

// One cache used from two threads at once used to crash (use-after-free in the sequence map).
// Now the overlapping call throws InvalidArgument naming both calls; the first call completes.
TEST(Robustness, ConcurrentUseOfOneCacheIsReported) {
  auto be =
      std::make_shared<HoldingBackend>(std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1})));
  const int D = 64, Hk = 1;
  KVCache cache(small_config(be, Preset::k4v2_g64, D, 1, Hk, 2, 1024));
  const SeqId id = cache.add_sequence();
  const auto k = kv_rows(8, Hk, D, 13), v = kv_rows(8, Hk, D, 14);
  be->hold_next_rotate();
  std::thread writer([&] { cache.append(0, {id}, {8}, k.data(), v.data()); });
  be->wait_until_held();  // the writer is inside KVCache::append now
  expect_error<InvalidArgument>([&] { (void)cache.length(id, 0); }, "KVCache::append");
  expect_error<InvalidArgument>([&] { cache.add_sequence(); }, "two threads");
  expect_error<InvalidArgument>([&] { (void)cache.memory_report(); }, "KVCache::memory_report");
  be->release();
  writer.join();
  EXPECT_EQ(cache.length(id, 0), 8);  // the first call completed; the guard is released
  EXPECT_NO_THROW(cache.add_sequence());
  // Concurrent const calls are fine.
  std::thread reader([&] {
    for (int i = 0; i < 1000; ++i) (void)cache.length(id, 0);
  });
  for (int i = 0; i < 1000; ++i) (void)cache.committed(id, 0);
  reader.join();
}

// contains() and num_sequences() used to skip the guard: called while another thread added or
// freed sequences they read the sequence map as it changed (SIGSEGV). Now they are refused like
// every other call that overlaps a mutating one.
TEST(Robustness, SequenceQueriesAreGuardedToo) {
  auto be =
      std::make_shared<HoldingBackend>(std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1})));
  const int D = 64, Hk = 1;
  KVCache cache(small_config(be, Preset::k4v2_g64, D, 1, Hk, 2, 1024));
  const SeqId id = cache.add_sequence();
  const auto k = kv_rows(8, Hk, D, 13), v = kv_rows(8, Hk, D, 14);
  be->hold_next_rotate();
  std::thread writer([&] { cache.append(0, {id}, {8}, k.data(), v.data()); });
  be->wait_until_held();
  expect_error<InvalidArgument>([&] { (void)cache.contains(id); }, "KVCache::contains");
  expect_error<InvalidArgument>([&] { (void)cache.num_sequences(); }, "KVCache::append");
  be->release();
  writer.join();
  EXPECT_TRUE(cache.contains(id));
  EXPECT_EQ(cache.num_sequences(), 1u);
}

// The same race without a held call: one thread adds and frees sequences while another asks
// about them. Every call either completes or is refused with InvalidArgument; nothing crashes,
// and the cache is consistent afterwards. (CI also runs this under ThreadSanitizer.)
TEST(Robustness, SequenceChurnAgainstQueriesFromAnotherThread) {
  auto be = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1}));
  KVCache cache(small_config(be, Preset::k4v2_g64, 64, 1, 1, 4, 256));
  std::atomic<bool> done{false};
  std::atomic<long> refused{0};
  auto refusing = [&](const std::function<void()>& call) {
    try {
      call();
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("two threads"), std::string::npos) << e.what();
      ++refused;
    }
  };
  std::atomic<bool> go{false};
  std::thread churn([&] {
    while (!go) std::this_thread::yield();  // start together with the queries below
    for (int i = 0; i < 2000; ++i) {
      SeqId id = 0;
      bool added = false;
      refusing([&] {
        id = cache.add_sequence();
        added = true;
      });
      if (added) {
        for (;;) {
          try {
            cache.free_sequence(id);
            break;
          } catch (const InvalidArgument&) {
            ++refused;  // the other thread was inside a call: try again
          }
        }
      }
    }
    done = true;
  });
  SeqId probe = 0;
  go = true;
  for (long queries = 0; !done || queries < 2000; ++queries) {
    refusing([&] { (void)cache.contains(probe++ % 64); });
    refusing([&] { (void)cache.num_sequences(); });
  }
  churn.join();
  EXPECT_EQ(cache.num_sequences(), 0u);
}
