// KVCache bookkeeping: commit/rollback, batched appends, block reuse, memory accounting, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "cache/cache_fixture.hpp"

namespace kvarn_cl::test {
namespace {

void expect_same_bytes(KVCache& a, SeqId ia, KVCache& b, SeqId ib, int layer) {
  const SequenceSnapshot x = a.snapshot(ia, layer), y = b.snapshot(ib, layer);
  EXPECT_EQ(x.sink_len, y.sink_len);
  EXPECT_EQ(x.num_tiles, y.num_tiles);
  EXPECT_EQ(x.tail_len, y.tail_len);
  EXPECT_TRUE(x.records == y.records);
  EXPECT_TRUE(x.sink_k == y.sink_k && x.sink_v == y.sink_v);
  EXPECT_TRUE(x.tail_k == y.tail_k && x.tail_v == y.tail_v);
}

// The sequence's bytes (layer 0) equal those of one committed append of its `tokens` rows.
void expect_same_bytes_as_one_append(KVCache& cache, SeqId id, const CacheConfig& cfg,
                                     const std::vector<float>& k, const std::vector<float>& v,
                                     int tokens) {
  KVCache one(cfg);
  const SeqId o = one.add_sequence();
  one.append(0, {o}, {tokens}, k.data(), v.data());
  expect_same_bytes(cache, id, one, o, 0);
}

const float* row_at(const std::vector<float>& rows, int token, int Hk, int D) {
  return rows.data() + std::size_t(token) * Hk * D;
}

TEST(KVCache, RollbackThenAppendEqualsCommittedOnly) {
  const int D = 64, Hk = 2, G = 64, P = 2 * G - 2;  // sink G, then a tail of G-2 committed tokens
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    const auto k = kv_rows(P + 40, Hk, D, 1), v = kv_rows(P + 40, Hk, D, 2);
    const auto junk_k = kv_rows(20, Hk, D, 3), junk_v = kv_rows(20, Hk, D, 4);
    KVCache a(small_config(nb.backend, Preset::k4v2_g64, D, 2, Hk, 2, 1024));
    KVCache b(small_config(nb.backend, Preset::k4v2_g64, D, 2, Hk, 2, 1024));
    const SeqId ia = a.add_sequence(), ib = b.add_sequence();
    for (int layer = 0; layer < 2; ++layer) {
      a.append(layer, {ia}, {P}, k.data(), v.data());
      // Speculative tokens that cross the tile end, rolled back.
      a.append(layer, {ia}, {7}, junk_k.data(), junk_v.data(), AppendMode::speculative);
    }
    EXPECT_EQ(a.length(ia, 0), P + 7);
    EXPECT_EQ(a.committed(ia, 0), P);
    EXPECT_EQ(a.quantized_tiles(ia, 0), 0);  // uncommitted tokens are never quantized
    a.rollback(ia);
    EXPECT_EQ(a.length(ia, 1), P);
    // Speculative tokens of which 3 are accepted (they complete the tile), the rest rolled back.
    for (int layer = 0; layer < 2; ++layer)
      a.append(layer, {ia}, {5}, row_at(k, P, Hk, D), row_at(v, P, Hk, D), AppendMode::speculative);
    a.commit(ia, 3);
    EXPECT_EQ(a.quantized_tiles(ia, 0), 1);
    a.rollback(ia);
    for (int layer = 0; layer < 2; ++layer)
      a.append(layer, {ia}, {37}, row_at(k, P + 3, Hk, D), row_at(v, P + 3, Hk, D));

    for (int layer = 0; layer < 2; ++layer) b.append(layer, {ib}, {P + 40}, k.data(), v.data());
    for (int layer = 0; layer < 2; ++layer) expect_same_bytes(a, ia, b, ib, layer);
  }
}

TEST(KVCache, BatchedAppendEqualsSeparateAppends) {
  const int D = 128, Hk = 2;
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    KVCache a(small_config(nb.backend, Preset::k4v2_g128, D, 1, Hk, 3, 2048));
    KVCache b(small_config(nb.backend, Preset::k4v2_g128, D, 1, Hk, 3, 2048));
    const std::vector<int> lens = {1, 400, 129};
    std::vector<SeqId> ia, ib;
    std::vector<float> k, v;
    for (std::size_t i = 0; i < lens.size(); ++i) {
      ia.push_back(a.add_sequence());
      ib.push_back(b.add_sequence());
      const auto ki = kv_rows(lens[i], Hk, D, 10 + std::uint32_t(i)),
                 vi = kv_rows(lens[i], Hk, D, 20 + std::uint32_t(i));
      b.append(0, {ib[i]}, {lens[i]}, ki.data(), vi.data());
      k.insert(k.end(), ki.begin(), ki.end());
      v.insert(v.end(), vi.begin(), vi.end());
    }
    a.append(0, ia, lens, k.data(), v.data());
    for (std::size_t i = 0; i < lens.size(); ++i) expect_same_bytes(a, ia[i], b, ib[i], 0);
    // fp16 input gives the same bytes as the f32 input it was rounded from... only where the
    // rounding is exact; instead check that an f16 append of fp16 data matches f32 of the same.
    KVCache c(small_config(nb.backend, Preset::k4v2_g128, D, 1, Hk, 1, 2048));
    const SeqId ic = c.add_sequence();
    const auto kh = to_half(k), vh = to_half(v);
    c.append(0, {ic}, {lens[0] + lens[1]}, kh.data(), vh.data());
    KVCache d(small_config(nb.backend, Preset::k4v2_g128, D, 1, Hk, 1, 2048));
    const SeqId id = d.add_sequence();
    const auto kf = to_float(kh), vf = to_float(vh);
    d.append(0, {id}, {lens[0] + lens[1]}, kf.data(), vf.data());
    expect_same_bytes(c, ic, d, id, 0);
  }
}

TEST(KVCache, FreedBlocksAreReused) {
  const int D = 64, Hk = 1, G = 64;
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    CacheConfig cfg = small_config(nb.backend, Preset::k4v4_g64, D, 2, Hk, 2, 64 * 10);
    cfg.pool_blocks = 3;
    KVCache cache(cfg);
    const auto k = kv_rows(G * 5, Hk, D, 5), v = kv_rows(G * 5, Hk, D, 6);
    const SeqId a = cache.add_sequence(), b = cache.add_sequence();
    cache.append(0, {a}, {G * 4}, k.data(), v.data());  // sink + 3 tiles: the whole pool
    EXPECT_EQ(cache.memory_report().free_blocks, 0u);
    cache.append(1, {a}, {G * 2}, k.data(), v.data());  // layer 1 reuses the shared block ids
    try {
      cache.append(0, {b}, {G * 2}, k.data(), v.data());
      ADD_FAILURE() << "expected OutOfMemory";
    } catch (const OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("needs 1 new blocks but 0 of 3 are free"),
                std::string::npos)
          << e.what();
    }
    EXPECT_EQ(cache.length(b, 0), 0);  // nothing changed
    cache.free_sequence(a);
    EXPECT_FALSE(cache.contains(a));
    EXPECT_EQ(cache.memory_report().free_blocks, 3u);
    cache.append(0, {b}, {G * 4}, k.data(), v.data());
    KVCache fresh(cfg);
    const SeqId f = fresh.add_sequence();
    fresh.append(0, {f}, {G * 4}, k.data(), v.data());
    expect_same_bytes(cache, b, fresh, f, 0);
    // Slots are reused too: a third sequence fits after a free.
    const SeqId c = cache.add_sequence();
    EXPECT_THROW(cache.add_sequence(), OutOfMemory);
    EXPECT_NE(c, a);  // ids are never reused
    EXPECT_THROW(cache.length(a, 0), InvalidArgument);
  }
}

// commit looks up its batch by the same rules as append (sizes, known ids, no repeats) and
// refuses, changing nothing, when the pool cannot hold the tiles it would complete.
TEST(KVCache, CommitChecksItsBatchAndThePool) {
  const int D = 64, Hk = 1, G = 64;
  auto be = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1}));
  CacheConfig cfg = small_config(be, Preset::k4v4_g64, D, 1, Hk, 2, G * 4);
  cfg.pool_blocks = 1;
  KVCache cache(cfg);
  const auto k = kv_rows(G * 2, Hk, D, 7), v = kv_rows(G * 2, Hk, D, 8);
  const SeqId a = cache.add_sequence(), b = cache.add_sequence();
  cache.append(0, {a}, {2 * G - 1}, k.data(), v.data());  // sink + a tail of G-1: no block yet
  cache.append(0, {b}, {2 * G}, k.data(), v.data());      // one tile: the whole pool
  cache.append(0, {a}, {1}, row_at(k, 2 * G - 1, Hk, D), row_at(v, 2 * G - 1, Hk, D),
               AppendMode::speculative);
  expect_error<InvalidArgument>(
      [&] {
        cache.commit({a, a}, {1, 1});
      },
      "listed twice (batch entry 1)");
  expect_error<InvalidArgument>(
      [&] {
        cache.commit(std::vector<SeqId>{a}, std::vector<int>{1, 1});
      },
      "tokens has 2");
  expect_error<InvalidArgument>(
      [&] { cache.commit(std::vector<SeqId>{a + 99}, std::vector<int>{1}); },
      "unknown sequence id");
  expect_error<InvalidArgument>([&] { cache.commit(std::vector<SeqId>{a}, std::vector<int>{-2}); },
                                "tokens[0] = -2");
  expect_error<OutOfMemory>(
      [&] { cache.commit(a, 1); },
      "commit: the block pool is exhausted: this commit needs 1 new blocks but 0 of 1 are free");
  EXPECT_EQ(cache.committed(a, 0), 2 * G - 1);  // nothing changed
  EXPECT_EQ(cache.quantized_tiles(a, 0), 0);
  cache.free_sequence(b);
  cache.commit(a, 1);
  EXPECT_EQ(cache.quantized_tiles(a, 0), 1);
  expect_same_bytes_as_one_append(cache, a, cfg, k, v, 2 * G);
}

TEST(KVCache, MemoryReportAddsUp) {
  const int D = 128, Hk = 8, L = 3, S = 4, G = 128;
  auto be = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{2}));
  KVCache cache(small_config(be, Preset::k4v2_g128, D, L, Hk, S, 1024));
  const std::size_t rb = cache.layout().bytes;
  EXPECT_EQ(rb, 13824u);
  MemoryReport r = cache.memory_report();
  const std::size_t blocks = std::size_t(S) * ((1024 - G) / G);
  EXPECT_EQ(r.records, std::size_t(L) * blocks * Hk * rb);
  EXPECT_EQ(r.sink, std::size_t(L) * S * Hk * G * D * 2 * 2);
  EXPECT_EQ(r.tail, std::size_t(L) * S * Hk * std::size_t(cache.tail_capacity()) * D * 2 * 2);
  EXPECT_EQ(cache.tail_capacity(), G - 1 + 64);
  EXPECT_EQ(r.records_in_use, 0u);
  EXPECT_EQ(r.total(), r.records + r.sink + r.tail + r.block_tables + r.seq_info + r.workspaces);

  const SeqId id = cache.add_sequence();
  const auto k = kv_rows(600, Hk, D, 1), v = kv_rows(600, Hk, D, 2);
  for (int l = 0; l < L; ++l) cache.append(l, {id}, {600}, k.data(), v.data());
  const auto q = gaussian_rows(32, D, 3);
  std::vector<float> out(32 * D);
  cache.attend(0, {id}, 32, q.data(), out.data());
  r = cache.memory_report();
  EXPECT_EQ(r.records_in_use, std::size_t(L) * 3 * Hk * rb);  // (600 - 128) / 128 = 3 tiles
  EXPECT_EQ(r.live_tokens, std::size_t(L) * 600);
  EXPECT_EQ(r.fp16_equivalent, std::size_t(L) * 600 * Hk * D * 4);
  EXPECT_GT(r.workspaces, std::size_t(600) * Hk * D * 2);  // staging rows of the prefill at least
  EXPECT_GT(r.block_tables, 0u);
  EXPECT_GT(r.seq_info, 0u);
  EXPECT_EQ(r.total(), r.records + r.sink + r.tail + r.block_tables + r.seq_info + r.workspaces);
}

TEST(KVCache, BadInputGetsClearErrors) {
  auto be = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1}));
  const int D = 64, Hk = 4;
  auto cfg = small_config(be, Preset::k4v2_g64, D, 2, Hk, 2, 512);
  {
    auto c = cfg;
    c.num_kv_heads = 0;
    expect_error<InvalidArgument>([&] { KVCache x(c); }, "num_kv_heads 0");
    c = cfg;
    c.codec.head_dim = 96;
    expect_error<InvalidArgument>([&] { KVCache x(c); }, "96");
    c = cfg;
    c.max_uncommitted = 65;
    expect_error<InvalidArgument>([&] { KVCache x(c); }, "max_uncommitted 65");
    c = cfg;
    c.backend = nullptr;
    expect_error<InvalidArgument>([&] { KVCache x(c); }, "backend");
  }
  KVCache cache(cfg);
  const SeqId id = cache.add_sequence();
  auto k = kv_rows(200, Hk, D, 1), v = kv_rows(200, Hk, D, 2);
  std::vector<float> q(16 * D, 0.5f), out(16 * D);
  expect_error<InvalidArgument>([&] { cache.append(0, {}, {}, k.data(), v.data()); },
                                "seq_ids is empty");
  expect_error<InvalidArgument>([&] { cache.append(0, {id}, {0}, k.data(), v.data()); },
                                "tokens[0] = 0");
  expect_error<InvalidArgument>(
      [&] {
        cache.append(0, {id}, {1, 2}, k.data(), v.data());
      },
      "tokens has 2");
  expect_error<InvalidArgument>([&] { cache.append(0, {id + 99}, {1}, k.data(), v.data()); },
                                "unknown sequence id " + std::to_string(id + 99));
  expect_error<InvalidArgument>([&] { cache.append(2, {id}, {1}, k.data(), v.data()); }, "layer 2");
  expect_error<InvalidArgument>(
      [&] {
        cache.append(0, {id, id}, {1, 1}, k.data(), v.data());
      },
      "listed twice");
  expect_error<InvalidArgument>([&] { cache.attend(0, {id}, 16, q.data(), out.data()); },
                                "no tokens in layer 0");
  k[5 * D + 3] = std::numeric_limits<float>::quiet_NaN();
  expect_error<NonFiniteInput>([&] { cache.append(0, {id}, {10}, k.data(), v.data()); },
                               "channel 3");
  k[5 * D + 3] = 1.0f;
  v[D] = 70000.0f;
  expect_error<NonFiniteInput>([&] { cache.append(0, {id}, {10}, k.data(), v.data()); },
                               "overflow fp16");
  v[D] = 1.0f;
  EXPECT_EQ(cache.length(id, 0), 0);  // failed appends change nothing
  cache.append(0, {id}, {100}, k.data(), v.data());
  expect_error<InvalidArgument>([&] { cache.attend(0, {id}, 6, q.data(), out.data()); },
                                "num_q_heads 6 is not a positive multiple of num_kv_heads 4");
  expect_error<InvalidArgument>([&] { cache.attend(0, {}, 16, q.data(), out.data()); },
                                "seq_ids is empty");
  q[7] = std::numeric_limits<float>::infinity();
  expect_error<NonFiniteInput>([&] { cache.attend(0, {id}, 16, q.data(), out.data()); },
                               "q[0][0][7]");
  q[7] = 0;
  expect_error<InvalidArgument>([&] { cache.attend(0, {id}, 16, q.data(), out.data(), -1.0f); },
                                "scale -1");
  expect_error<InvalidArgument>([&] { cache.append(0, {id}, {500}, k.data(), v.data()); },
                                "more than max_tokens_per_sequence 512");
  cache.append(0, {id}, {3}, k.data(), v.data(), AppendMode::speculative);
  expect_error<InvalidArgument>([&] { cache.append(0, {id}, {1}, k.data(), v.data()); },
                                "3 uncommitted tokens");
  expect_error<InvalidArgument>(
      [&] { cache.append(0, {id}, {62}, k.data(), v.data(), AppendMode::speculative); },
      "more than max_uncommitted 64");
  expect_error<InvalidArgument>([&] { cache.commit(id, 4); },
                                "only 3 uncommitted tokens in layer 0");
  expect_error<InvalidArgument>([&] { cache.commit(id, 1); },
                                "only 0 uncommitted tokens in layer 1");
  cache.commit(id, -1);
  EXPECT_EQ(cache.committed(id, 0), 103);
  expect_error<InvalidArgument>([&] { cache.free_sequence(id + 5); }, "unknown sequence id");
}

TEST(KVCache, LayersAdvanceIndependentlyOverSharedBlockTables) {
  const int D = 64, Hk = 2, G = 64;
  auto be = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{2}));
  KVCache cache(small_config(be, Preset::k4v2_g64, D, 2, Hk, 1, 1024));
  const SeqId id = cache.add_sequence();
  const auto k = kv_rows(G * 4, Hk, D, 1), v = kv_rows(G * 4, Hk, D, 2);
  cache.append(0, {id}, {G * 4}, k.data(), v.data());
  cache.append(1, {id}, {G * 2 + 5}, k.data(), v.data());
  EXPECT_EQ(cache.quantized_tiles(id, 0), 3);
  EXPECT_EQ(cache.quantized_tiles(id, 1), 1);
  cache.append(1, {id}, {G * 2 - 5}, k.data() + std::size_t(G * 2 + 5) * Hk * D,
               v.data() + std::size_t(G * 2 + 5) * Hk * D);
  // Same tokens in both layers, same bytes, whatever the order of the appends.
  KVCache one(small_config(be, Preset::k4v2_g64, D, 2, Hk, 1, 1024));
  const SeqId o = one.add_sequence();
  one.append(0, {o}, {G * 4}, k.data(), v.data());
  const SequenceSnapshot a = cache.snapshot(id, 1), b = one.snapshot(o, 0);
  EXPECT_TRUE(a.records == b.records);
  EXPECT_TRUE(a.sink_k == b.sink_k && a.tail_v == b.tail_v);
}

}  // namespace
}  // namespace kvarn_cl::test
