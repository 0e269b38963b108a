// The device-resident entry points of KVCache (append from and attend into backend Buffers, as an
// engine does with its own cl_mem) give the same cache bytes and outputs as the host ones.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "cache/cache_fixture.hpp"
#include "kvarn_cl/cache.hpp"

using namespace kvarn_cl;
using namespace kvarn_cl::test;

namespace {

std::unique_ptr<Buffer> to_device(Backend& be, const void* data, std::size_t bytes) {
  auto b = be.allocate(bytes);
  be.write(*b, 0, data, bytes);
  return b;
}

}  // namespace

TEST(DeviceInput, AppendAndAttendFromBuffersMatchHostCalls) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    const int D = 64, Hk = 2, Hq = 4;
    KVCache host(small_config(nb.backend, Preset::k4v2_g64, D, 1, Hk, 2, 1024));
    KVCache device(small_config(nb.backend, Preset::k4v2_g64, D, 1, Hk, 2, 1024));
    const std::vector<SeqId> h_ids = {host.add_sequence(), host.add_sequence()};
    const std::vector<SeqId> d_ids = {device.add_sequence(), device.add_sequence()};
    Backend& be = *nb.backend;
    // Two appends of mixed lengths: the second one fills tails and completes tiles (gap fill).
    for (const auto& tokens : {std::vector<int>{100, 37}, std::vector<int>{90, 200}}) {
      const int total = tokens[0] + tokens[1];
      const auto k = kv_rows(total, Hk, D, 11u + unsigned(total));
      const auto v = kv_rows(total, Hk, D, 12u + unsigned(total));
      host.append(0, h_ids, tokens, k.data(), v.data());
      auto kb = to_device(be, k.data(), k.size() * 4), vb = to_device(be, v.data(), v.size() * 4);
      device.append(0, d_ids, tokens, *kb, *vb, ElementType::f32, AppendMode::commit);
    }
    for (int i = 0; i < 2; ++i) {
      const SequenceSnapshot a = host.snapshot(h_ids[std::size_t(i)], 0);
      const SequenceSnapshot b = device.snapshot(d_ids[std::size_t(i)], 0);
      EXPECT_EQ(a.num_tiles, b.num_tiles);
      EXPECT_GT(a.num_tiles, 0);
      EXPECT_EQ(a.records, b.records);
      EXPECT_EQ(a.sink_k, b.sink_k);
      EXPECT_EQ(a.tail_k, b.tail_k);
      EXPECT_EQ(a.tail_v, b.tail_v);
    }
    const auto q = kv_rows(2, Hq, D, 99);  // [2][Hq][D]
    std::vector<float> out_host(q.size()), out_dev(q.size());
    host.attend(0, h_ids, Hq, q.data(), out_host.data());
    auto qb = to_device(be, q.data(), q.size() * 4);
    auto ob = be.allocate(q.size() * 4);
    device.attend(0, d_ids, Hq, *qb, *ob, ElementType::f32);
    be.read(*ob, 0, out_dev.data(), out_dev.size() * 4);
    EXPECT_EQ(0, std::memcmp(out_host.data(), out_dev.data(), out_host.size() * 4));

    // A buffer too small for the batch is refused with both sizes named.
    auto small = be.allocate(16);
    try {
      device.append(0, {d_ids[0]}, {4}, *small, *small, ElementType::f32, AppendMode::commit);
      ADD_FAILURE() << "expected InvalidArgument";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("holds 16 bytes"), std::string::npos) << e.what();
    }
  }
}

// Two caches on one backend, used from two threads at once (an engine serving two models, or the
// evaluation tool filling several caches in parallel): the backend serializes its calls.
TEST(SharedBackend, TwoCachesFromTwoThreads) {
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    const int D = 64, Hk = 2, Hq = 4, layers = 3;
    auto run = [&](std::uint32_t seed, std::vector<float>* out) {
      KVCache cache(small_config(nb.backend, Preset::k4v2_g64, D, layers, Hk, 1, 400));
      const SeqId s = cache.add_sequence();
      const auto k = kv_rows(1, Hk, D, seed), v = kv_rows(1, Hk, D, seed + 1);
      const auto q = kv_rows(1, Hq, D, seed + 2);
      std::vector<float> o(q.size());
      for (int t = 0; t < 150; ++t)
        for (int l = 0; l < layers; ++l) {
          cache.append(l, {s}, {1}, k.data(), v.data());
          cache.attend(l, {s}, Hq, q.data(), o.data());
        }
      *out = o;
    };
    std::vector<float> alone_a, alone_b, together_a, together_b;
    run(5, &alone_a);
    run(9, &alone_b);
    std::thread ta(run, 5u, &together_a), tb(run, 9u, &together_b);
    ta.join();
    tb.join();
    EXPECT_EQ(alone_a, together_a);
    EXPECT_EQ(alone_b, together_b);
  }
}
