// Per-layer presets and the exact recent-token window of KVCache, and layer-preset files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "cache/cache_fixture.hpp"

namespace kvarn_cl::test {
namespace {

// Appends `k`/`v` ([T][Hk][D]) to `layer` as a prefill of `prefill` tokens, then decode steps of
// 1..3 tokens, some of them speculative and committed afterwards.
void fill(KVCache& cache, SeqId id, int layer, const std::vector<float>& k,
          const std::vector<float>& v, int T, int prefill) {
  const std::size_t row = k.size() / std::size_t(T);
  cache.append(layer, {id}, {prefill}, k.data(), v.data());
  int done = prefill;
  for (int step = 0; done < T; ++step) {
    const int n = std::min(1 + step % 3, T - done);
    if (step % 4 == 3) {
      cache.append(layer, {id}, {n}, k.data() + done * row, v.data() + done * row,
                   AppendMode::speculative);
    } else {
      cache.append(layer, {id}, {n}, k.data() + done * row, v.data() + done * row);
    }
    done += n;
    if (step % 4 == 3) cache.commit(id, -1);  // every layer: only this one has uncommitted tokens
  }
}

// Every layer of a mixed cache holds exactly the bytes a one-preset cache of that layer's preset
// holds for the same tokens, and attends to them as exactly as that cache does.
TEST(LayerPresets, EachLayerMatchesAOnePresetCache) {
  const int D = 64, Hk = 2, Hq = 6, T = 700;
  const std::vector<Preset> presets{Preset::k4v4_g128, Preset::k4v2_g128, Preset::k2v2_g128,
                                    Preset::k4v2_g128};
  const auto k = kv_rows(T, Hk, D, 11), v = kv_rows(T, Hk, D, 12);
  const auto q = gaussian_rows(Hq, D, 13);
  const float scale = 1.0f / std::sqrt(float(D));
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    CacheConfig cfg =
        small_config(nb.backend, Preset::k4v2_g64, D, int(presets.size()), Hk, 1, 1024);
    cfg.layer_presets = presets;  // codec.preset (g64) is ignored
    KVCache mixed(cfg);
    const SeqId id = mixed.add_sequence();
    for (int l = 0; l < int(presets.size()); ++l) {
      SCOPED_TRACE("layer " + std::to_string(l) + " " + to_string(presets[std::size_t(l)]));
      EXPECT_EQ(mixed.config().layer_codec(l).preset, presets[std::size_t(l)]);
      EXPECT_EQ(mixed.layout(l).bytes, RecordLayout::make(mixed.config().layer_codec(l)).bytes);
      fill(mixed, id, l, k, v, T, 150 + 37 * l);
      KVCache single(small_config(nb.backend, presets[std::size_t(l)], D, 1, Hk, 1, 1024));
      const SeqId s = single.add_sequence();
      fill(single, s, 0, k, v, T, 150 + 37 * l);
      const SequenceSnapshot a = mixed.snapshot(id, l), b = single.snapshot(s, 0);
      EXPECT_EQ(a.num_tiles, (T - 128) / 128);
      EXPECT_EQ(a.records.size(), std::size_t(a.num_tiles) * Hk * mixed.layout(l).bytes);
      EXPECT_TRUE(a.records == b.records);
      EXPECT_TRUE(a.tail_k == b.tail_k && a.tail_v == b.tail_v);
      std::vector<float> out(std::size_t(Hq) * D), out_single(out.size()), mat(out.size());
      mixed.attend(l, {id}, Hq, q.data(), out.data());
      single.attend(0, {s}, Hq, q.data(), out_single.data());
      mixed.attend(l, {id}, Hq, q.data(), mat.data(), 0.0f, AttendPath::materialize);
      EXPECT_EQ(out, out_single);
      const auto ref = reference_attention(mixed, id, l, Hq, q.data(), scale);
      EXPECT_LT(relative_error(out, ref), 1e-4);
      EXPECT_LT(relative_error(mat, ref), 3e-3);
    }
    // Each layer's record pool is sized by its own record bytes.
    const MemoryReport r = mixed.memory_report();
    std::size_t records = 0, in_use = 0;
    const std::size_t blocks = (1024 - 128) / 128;
    for (int l = 0; l < int(presets.size()); ++l) {
      records += blocks * Hk * mixed.layout(l).bytes;
      in_use += std::size_t((T - 128) / 128) * Hk * mixed.layout(l).bytes;
    }
    EXPECT_EQ(r.records, records);
    EXPECT_EQ(r.records_in_use, in_use);
  }
}

TEST(LayerPresets, BadConfigurationsGetClearErrors) {
  auto be = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1}));
  CacheConfig cfg = small_config(be, Preset::k4v2_g128, 64, 3, 2, 1, 512);
  cfg.layer_presets = {Preset::k4v2_g128, Preset::k4v4_g128};
  expect_error<InvalidArgument>([&] { KVCache c(cfg); }, "2 presets for num_layers 3");
  cfg.layer_presets = {Preset::k4v2_g128, Preset::k4v4_g64, Preset::k4v2_g128};
  expect_error<InvalidArgument>([&] { KVCache c(cfg); }, "layer_presets[1] k4v4_g64: tile size 64");
  cfg.layer_presets.clear();
  cfg.recent_tokens = -1;
  expect_error<InvalidArgument>([&] { KVCache c(cfg); }, "recent_tokens -1");
  cfg.recent_tokens = 0;
  KVCache c(cfg);
  expect_error<InvalidArgument>([&] { c.layout(3); }, "layer 3");
}

// With recent_tokens = R a tile is quantized only once its tokens are older than the newest R;
// the tiles that are quantized are the same records a window-less cache writes, the window's
// tokens are exact, and the tail pool (and the memory report) grow by R rows per slot and head.
TEST(RecentWindow, KeepsTheNewestTokensExact) {
  const int D = 64, Hk = 2, Hq = 4, G = 64, R = 100;
  const float scale = 1.0f / std::sqrt(float(D));
  const auto q = gaussian_rows(Hq, D, 23);
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    CacheConfig cfg = small_config(nb.backend, Preset::k4v2_g64, D, 2, Hk, 2, 1024);
    KVCache plain(cfg);
    cfg.recent_tokens = R;
    KVCache windowed(cfg);
    EXPECT_EQ(windowed.tail_capacity(), G - 1 + R + 64);
    EXPECT_EQ(windowed.memory_report().tail - plain.memory_report().tail,
              std::size_t(2) * 2 * Hk * 2 * R * D * 2);  // 2 layers, 2 slots, K and V, fp16
    for (int T : {G + R - 1, G + R, G + R + G - 1, G + R + G, 611}) {
      SCOPED_TRACE("T = " + std::to_string(T));
      const auto k = kv_rows(T, Hk, D, std::uint32_t(T)),
                 v = kv_rows(T, Hk, D, std::uint32_t(T) + 1);
      const SeqId a = plain.add_sequence(), b = windowed.add_sequence();
      for (int l = 0; l < 2; ++l) {
        fill(plain, a, l, k, v, T, l == 0 ? 1 : std::min(T, 200));
        fill(windowed, b, l, k, v, T, l == 0 ? 1 : std::min(T, 200));
        const SequenceSnapshot x = plain.snapshot(a, l), y = windowed.snapshot(b, l);
        const int expect_tiles = T > G + R ? (T - G - R) / G : 0;
        EXPECT_EQ(y.num_tiles, expect_tiles);
        EXPECT_EQ(y.tail_len, T - G - expect_tiles * G);
        EXPECT_GE(y.tail_len, std::min(R, T - G));
        ASSERT_LE(y.num_tiles, x.num_tiles);
        EXPECT_TRUE(std::equal(y.records.begin(), y.records.end(), x.records.begin()));
        // The window's rows are the fp16 rotated rows the sink/tail would hold: compare them with
        // a materialized window-less cache's exact rows (its tail) where both are exact.
        const MaterializedKV m = windowed.materialize(b, l, Frame::original);
        const std::size_t row = std::size_t(Hk) * D;
        for (int h = 0; h < Hk; ++h) {
          std::vector<float> got, want;
          for (int t = G + y.num_tiles * G; t < T; ++t)
            for (int d = 0; d < D; ++d) {
              got.push_back(half_to_float(m.k[(std::size_t(h) * T + t) * D + d]));
              want.push_back(k[t * row + h * D + d]);
            }
          if (!got.empty()) {
            EXPECT_LT(relative_error(got, want), 2e-3);
          }
        }
        std::vector<float> out(std::size_t(Hq) * D);
        windowed.attend(l, {b}, Hq, q.data(), out.data());
        EXPECT_LT(relative_error(out, reference_attention(windowed, b, l, Hq, q.data(), scale)),
                  1e-4);
        // Closer to exact attention than the window-less cache (more tokens are exact).
        std::vector<float> out_plain(out.size());
        plain.attend(l, {a}, Hq, q.data(), out_plain.data());
        const auto exact = exact_over_rows(k, v, T, Hk, D, Hq, q.data(), scale);
        if (y.num_tiles < x.num_tiles) {
          EXPECT_LE(relative_error(out, exact), relative_error(out_plain, exact));
        }
      }
      const MemoryReport r = windowed.memory_report();
      const std::size_t held_back =
          std::size_t((T > G ? (T - G) / G : 0) - (T > G + R ? (T - G - R) / G : 0)) * G;
      EXPECT_EQ(r.exact_recent_tokens, 2 * held_back);  // both layers
      EXPECT_EQ(plain.memory_report().exact_recent_tokens, 0u);
      plain.free_sequence(a);
      windowed.free_sequence(b);
    }
  }
}

// The default configuration keeps the newest kDefaultRecentTokens (128) tokens exact: the
// configuration that meets the accuracy bar (docs/ACCURACY.md); recent_tokens = 0 turns it off.
TEST(RecentWindow, IsOnByDefault) {
  EXPECT_EQ(kDefaultRecentTokens, 128);
  EXPECT_EQ(CacheConfig{}.recent_tokens, kDefaultRecentTokens);
  const int D = 64, Hk = 1, T = 700;  // k4v2_g128: sink 128, then tiles of 128
  CacheConfig cfg;
  cfg.codec.head_dim = D;
  cfg.num_kv_heads = Hk;
  cfg.max_tokens_per_sequence = 1024;
  cfg.backend = make_cpu_backend(CpuThreads{1});
  KVCache windowed(cfg);
  cfg.recent_tokens = 0;
  KVCache off(cfg);
  const auto k = kv_rows(T, Hk, D, 5), v = kv_rows(T, Hk, D, 6);
  const SeqId a = windowed.add_sequence(), b = off.add_sequence();
  windowed.append(0, {a}, {T}, k.data(), v.data());
  off.append(0, {b}, {T}, k.data(), v.data());
  EXPECT_EQ(windowed.quantized_tiles(a, 0),
            (T - 128 - 128) / 128);                       // 3: tile 4 holds recent tokens
  EXPECT_EQ(off.quantized_tiles(b, 0), (T - 128) / 128);  // 4
  EXPECT_EQ(windowed.memory_report().exact_recent_tokens, std::size_t(128));
  EXPECT_EQ(off.memory_report().exact_recent_tokens, std::size_t(0));
  // The window's cost: 128 fp16 rows of K and V per layer, head and slot.
  EXPECT_EQ(windowed.memory_report().tail - off.memory_report().tail,
            std::size_t(128) * 2 * D * 2 * Hk);
}

TEST(LayerPresetFile, RoundTripAndErrors) {
  const std::vector<Preset> p{Preset::k4v4_g128, Preset::k4v2_g128, Preset::k2v2_g128};
  const std::string text = format_layer_presets(p, "budget 64 B/token/head\nmodel X");
  EXPECT_NE(text.find("# budget 64 B/token/head\n# model X\n"), std::string::npos);
  EXPECT_EQ(parse_layer_presets(text, "t"), p);
  EXPECT_EQ(parse_layer_presets("  0 k4v2_g64   # first\n\n1 k4v4_g64\n", "t"),
            (std::vector<Preset>{Preset::k4v2_g64, Preset::k4v4_g64}));
  expect_error<InvalidArgument>([] { parse_layer_presets("0 k4v2_g128\n2 k4v2_g128\n", "f.txt"); },
                                "f.txt:2: layer '2' where layer 1 was expected");
  expect_error<InvalidArgument>([] { parse_layer_presets("0 k9v9\n", "f.txt"); }, "k9v9");
  expect_error<InvalidArgument>([] { parse_layer_presets("0 k4v2_g128 extra\n", "f.txt"); },
                                "f.txt:1: expected");
  expect_error<InvalidArgument>([] { parse_layer_presets("# nothing\n", "f.txt"); },
                                "no '<layer> <preset>'");
  expect_error<IoError>([] { read_layer_presets("/nonexistent/plan.txt"); },
                        "/nonexistent/plan.txt");
  const std::string path = ::testing::TempDir() + "layer_presets_test.txt";
  {
    std::ofstream f(path);
    f << text;
  }
  EXPECT_EQ(read_layer_presets(path), p);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace kvarn_cl::test
