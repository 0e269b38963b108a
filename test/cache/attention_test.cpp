// Decode attention through the cache: fused (from the records) vs materialize (fp16) vs exact fp32
// attention over the cache's own dequantized content, on every test backend.
#include <gtest/gtest.h>

#include <cmath>

#include "cache/cache_fixture.hpp"

namespace kvarn_cl::test {
namespace {

struct Geometry {
  Preset preset;
  int head_dim, q_heads, kv_heads;
  std::vector<int> lengths;  // one sequence per entry, all attended in one call
};

std::string label(const Geometry& g) {
  std::string s = to_string(g.preset) + "_D" + std::to_string(g.head_dim) + "_Hq" +
                  std::to_string(g.q_heads) + "_Hk" + std::to_string(g.kv_heads);
  for (int l : g.lengths) s += "_" + std::to_string(l);
  return s;
}

// Materialized rows (original frame) against the appended rows, per sink/tile/tail region.
void check_content(KVCache& cache, SeqId id, int layer, const std::vector<float>& k,
                   const std::vector<float>& v, int T) {
  const CacheConfig& c = cache.config();
  const int D = c.codec.head_dim, Hk = c.num_kv_heads, G = c.codec.group();
  const MaterializedKV m = cache.materialize(id, layer, Frame::original);
  ASSERT_EQ(m.tokens, T);
  const SequenceSnapshot snap = cache.snapshot(id, layer);
  const auto mk = to_float(m.k), mv = to_float(m.v);
  auto region = [&](const std::vector<float>& rows, const std::vector<float>& mat, int h, int t0,
                    int n, bool from_mat) {
    std::vector<float> r(std::size_t(n) * D);
    for (int t = 0; t < n; ++t)
      for (int d = 0; d < D; ++d)
        r[std::size_t(t) * D + d] = from_mat ? mat[(std::size_t(h) * T + t0 + t) * D + d]
                                             : rows[(std::size_t(t0 + t) * Hk + h) * D + d];
    return r;
  };
  const double k_bound = c.codec.k_bits() == 4 ? 0.2 : 0.6,
               v_bound = c.codec.v_bits() == 4 ? 0.2 : 0.6;
  for (int h = 0; h < Hk; ++h) {
    int t0 = 0;
    auto exact_region = [&](int n) {
      if (n == 0) return;
      EXPECT_LT(relative_error(region(k, mk, h, t0, n, true), region(k, mk, h, t0, n, false)),
                2e-3);
      EXPECT_LT(relative_error(region(v, mv, h, t0, n, true), region(v, mv, h, t0, n, false)),
                2e-3);
      t0 += n;
    };
    exact_region(snap.sink_len);
    for (int j = 0; j < snap.num_tiles; ++j, t0 += G) {
      EXPECT_LT(relative_error(region(k, mk, h, t0, G, true), region(k, mk, h, t0, G, false)),
                k_bound);
      EXPECT_LT(relative_error(region(v, mv, h, t0, G, true), region(v, mv, h, t0, G, false)),
                v_bound);
    }
    exact_region(snap.tail_len);
  }
}

void check_geometry(const NamedBackend& nb, const Geometry& g) {
  SCOPED_TRACE(nb.label + " " + label(g));
  int max_len = 0;
  for (int l : g.lengths) max_len = std::max(max_len, l);
  KVCache cache(small_config(nb.backend, g.preset, g.head_dim, 2, g.kv_heads, int(g.lengths.size()),
                             max_len + 8));
  const int D = g.head_dim, Hk = g.kv_heads, Hq = g.q_heads;
  std::vector<SeqId> ids;
  std::vector<std::vector<float>> ks, vs;
  for (std::size_t i = 0; i < g.lengths.size(); ++i) {
    ids.push_back(cache.add_sequence());
    ks.push_back(kv_rows(g.lengths[i], Hk, D, 100 + std::uint32_t(i)));
    vs.push_back(kv_rows(g.lengths[i], Hk, D, 200 + std::uint32_t(i)));
  }
  // Layer 1: a prefill of the first third, then the rest as one batched append per step of 1..3
  // tokens, so appends cross tile boundaries in different ways for each sequence.
  const int layer = 1;
  std::vector<int> done(g.lengths.size(), 0);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const int n = g.lengths[i] / 3 + 1;
    cache.append(layer, {ids[i]}, {n}, ks[i].data(), vs[i].data());
    done[i] = n;
  }
  for (int step = 0;; ++step) {
    std::vector<SeqId> b;
    std::vector<int> t;
    std::vector<float> k, v;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const int n = std::min(1 + (step + int(i)) % 3, g.lengths[i] - done[i]);
      if (n <= 0) continue;
      b.push_back(ids[i]);
      t.push_back(n);
      const std::size_t at = std::size_t(done[i]) * Hk * D, len = std::size_t(n) * Hk * D;
      k.insert(k.end(), ks[i].begin() + at, ks[i].begin() + at + len);
      v.insert(v.end(), vs[i].begin() + at, vs[i].begin() + at + len);
      done[i] += n;
    }
    if (b.empty()) break;
    cache.append(layer, b, t, k.data(), v.data());
  }
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(cache.length(ids[i], layer), g.lengths[i]);

  const std::size_t per_seq = std::size_t(Hq) * D;
  const std::vector<float> q = gaussian_rows(ids.size() * Hq, D, 7);
  const float scale = 1.0f / std::sqrt(float(D));
  std::vector<float> fused(ids.size() * per_seq), mat(fused.size());
  std::vector<half_bits> fused_h(fused.size());
  cache.attend(layer, ids, Hq, q.data(), fused.data());
  cache.attend(layer, ids, Hq, q.data(), mat.data(), 0.0f, AttendPath::materialize);
  cache.attend(layer, ids, Hq, q.data(), fused_h.data());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    SCOPED_TRACE("sequence " + std::to_string(i) + " of length " + std::to_string(g.lengths[i]));
    const std::vector<float> ref =
        reference_attention(cache, ids[i], layer, Hq, q.data() + i * per_seq, scale);
    const std::vector<float> f(fused.begin() + i * per_seq, fused.begin() + (i + 1) * per_seq);
    const std::vector<float> m(mat.begin() + i * per_seq, mat.begin() + (i + 1) * per_seq);
    const std::vector<half_bits> fh(fused_h.begin() + i * per_seq,
                                    fused_h.begin() + (i + 1) * per_seq);
    EXPECT_LT(relative_error(f, ref), 1e-4);
    EXPECT_LT(relative_error(m, ref), 3e-3);           // fp16 rows: fp16 accuracy
    EXPECT_LT(relative_error(to_float(fh), f), 1e-3);  // fp16 output of the same result
    // The reference above reads the cache's own bytes; this checks that those bytes hold the
    // appended tokens in order: fp16 rows exactly (to fp16 rounding), tiles to quantization error.
    check_content(cache, ids[i], layer, ks[i], vs[i], g.lengths[i]);
  }
  // Same call twice: bit-identical.
  std::vector<float> again(fused.size());
  cache.attend(layer, ids, Hq, q.data(), again.data());
  EXPECT_EQ(again, fused);
}

TEST(CacheAttention, GqaRatiosAndHeadDims) {
  const std::vector<Geometry> geometries = {
      {Preset::k4v2_g128, 128, 4, 4, {300}},              // GQA 1
      {Preset::k4v2_g128, 128, 8, 2, {129, 600}},         // GQA 4
      {Preset::k4v4_g64, 64, 8, 1, {64, 65, 200}},        // GQA 8
      {Preset::k4v2_g64, 256, 4, 2, {191, 192, 193}},     // D 256
      {Preset::k2v2_g128, 64, 2, 1, {5, 127, 128, 257}},  // T below, at and across tile ends
  };
  for (const NamedBackend& nb : cache_test_backends())
    for (const Geometry& g : geometries) check_geometry(nb, g);
}

TEST(CacheAttention, SplitContextMatchesUnsplit) {
  // One sequence on many threads is split across chunks and merged by log-sum-exp; one thread
  // never splits. Both must agree to fp32 rounding.
  auto one = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{1}));
  auto many = std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{8}));
  std::vector<float> outs[2];
  int i = 0;
  for (auto& be : {one, many}) {
    KVCache cache(small_config(be, Preset::k4v2_g64, 64, 1, 1, 1, 2000));
    const SeqId id = cache.add_sequence();
    const auto k = kv_rows(1500, 1, 64, 1), v = kv_rows(1500, 1, 64, 2);
    cache.append(0, {id}, {1500}, k.data(), v.data());
    const auto q = gaussian_rows(4, 64, 3);
    outs[i].resize(4 * 64);
    cache.attend(0, {id}, 4, q.data(), outs[i].data());
    ++i;
  }
  EXPECT_LT(relative_error(outs[1], outs[0]), 1e-5);
}

TEST(CacheAttention, Fp16BaselineMatchesExact) {
  // Backend::attend_fp16 over a plain fp16 cache in the original frame.
  for (const NamedBackend& nb : cache_test_backends()) {
    SCOPED_TRACE(nb.label);
    Backend& be = *nb.backend;
    const int S = 2, Hq = 8, Hk = 2, D = 128, cap = 300;
    const std::vector<int> lens = {300, 77};
    const auto rows = gaussian_rows(std::size_t(S) * Hk * cap * 2, D, 9);
    const auto h = to_half(rows);
    const std::size_t half_bytes = std::size_t(S) * Hk * cap * D * 2;
    auto kb = be.allocate(half_bytes), vb = be.allocate(half_bytes),
         qb = be.allocate(S * Hq * D * 4), ob = be.allocate(S * Hq * D * 4),
         lb = be.allocate(S * 4);
    be.write(*kb, 0, h.data(), half_bytes);
    be.write(*vb, 0, h.data() + half_bytes / 2, half_bytes);
    const auto q = gaussian_rows(std::size_t(S) * Hq, D, 10);
    be.write(*qb, 0, q.data(), q.size() * 4);
    be.write(*lb, 0, lens.data(), S * 4);
    const AttendFp16Args a =
        AttendFp16Args::over(S, Hq, Hk, D, *qb, *ob, *kb, *vb, cap, *lb, Frame::original);
    be.attend_fp16(a);
    std::vector<float> out(std::size_t(S) * Hq * D);
    be.read(*ob, 0, out.data(), out.size() * 4);
    const auto hf = to_float(h);
    for (int s = 0; s < S; ++s) {
      std::vector<float> k(std::size_t(Hk) * lens[s] * D), v(k.size()), ref(std::size_t(Hq) * D);
      for (int hk = 0; hk < Hk; ++hk)
        for (int t = 0; t < lens[s]; ++t)
          for (int d = 0; d < D; ++d) {
            const std::size_t src = ((std::size_t(s) * Hk + hk) * cap + t) * D + d;
            k[(std::size_t(hk) * lens[s] + t) * D + d] = hf[src];
            v[(std::size_t(hk) * lens[s] + t) * D + d] = hf[half_bytes / 2 + src];
          }
      exact_attention(q.data() + std::size_t(s) * Hq * D, k.data(), v.data(), Hq, Hk, D, lens[s],
                      a.scale, ref.data());
      const std::vector<float> got(out.begin() + std::size_t(s) * Hq * D,
                                   out.begin() + std::size_t(s + 1) * Hq * D);
      EXPECT_LT(relative_error(got, ref), 1e-5);
    }
  }
}

}  // namespace
}  // namespace kvarn_cl::test
