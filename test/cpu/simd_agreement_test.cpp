// The SIMD paths (src/cpu/simd.hpp) against the scalar reference, on every instruction set
// Highway compiled into the library that this CPU supports, each forced in turn: quantized
// records identical except at rounding ties (SPEC §5 bar: at most 16 differing codes per 128
// tiles, scale products within rtol 1e-3), dequantization and rotation bit-identical, decode
// attention within 1e-5 relative, and the same errors for bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/record_agreement.hpp"
#include "common/test_support.hpp"
#include "cpu/decode_attention.hpp"
#include "cpu/simd.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/thread_pool.hpp"

namespace kvarn_cl::test {
namespace {

// Restores automatic dispatch when a test ends, even on failure.
struct ForcedTarget {
  explicit ForcedTarget(const cpu::simd::Target& t) { cpu::simd::force_target(t.bits); }
  ~ForcedTarget() { cpu::simd::force_target(0); }
};

std::vector<cpu::simd::Target> targets() {
  cpu::simd::force_target(0);
  return cpu::simd::available_targets();
}

struct Tiles {
  std::vector<half_bits> k, v;
};

// Rotated tiles of N(0,1) rows with outlier channels, a few of them with outlier tokens too.
Tiles make_tiles(const CodecParams& p, std::size_t tiles, std::uint32_t seed) {
  const int G = p.group(), D = p.head_dim;
  auto kf = gaussian_rows(tiles * G, D, seed, {1, 7, D / 2}, 20.0f);
  auto vf = gaussian_rows(tiles * G, D, seed + 1, {3}, 8.0f);
  for (std::size_t t = 0; t < tiles * G; t += 37) kf[t * D + 5] *= 30.0f;
  Tiles out{std::vector<half_bits>(kf.size()), std::vector<half_bits>(vf.size())};
  rotate_rows(kf.data(), out.k.data(), tiles * G, D);
  rotate_rows(vf.data(), out.v.data(), tiles * G, D);
  return out;
}

const CodecParams kGeometries[] = {
    {Preset::k4v2_g128, 128, 8}, {Preset::k4v4_g128, 128, 8},  {Preset::k2v2_g128, 128, 8},
    {Preset::k4v2_g64, 128, 8},  {Preset::k4v4_g64, 64, 8},    {Preset::k4v2_g128, 64, 8},
    {Preset::k4v2_g128, 256, 8}, {Preset::k4v2_g128, 128, 16},
};

TEST(SimdTargets, EveryTargetCanBeForcedAndNamed) {
  const auto ts = targets();
  ASSERT_FALSE(ts.empty());
  for (const auto& t : ts) {
    ForcedTarget forced(t);
    EXPECT_EQ(cpu::simd::target_name(), t.name);
    RecordProperty("target_" + t.name, "tested");
  }
}

TEST(SimdAgreement, QuantizeMatchesTheReferenceExceptAtTies) {
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    for (const CodecParams& p : kGeometries) {
      const RecordLayout l = RecordLayout::make(p);
      const std::size_t tiles = p.preset == Preset::k4v2_g128 && p.head_dim == 128 ? 128 : 16;
      const Tiles in =
          make_tiles(p, tiles, 100 + std::uint32_t(p.head_dim) + std::uint32_t(p.preset));
      const std::size_t tv = std::size_t(p.group()) * p.head_dim;
      std::vector<std::uint8_t> got(tiles * l.bytes), want(tiles * l.bytes);
      for (std::size_t i = 0; i < tiles; ++i) {
        cpu::simd::quantize_tile(p, in.k.data() + i * tv, in.v.data() + i * tv,
                                 got.data() + i * l.bytes);
        quantize_tile(p, in.k.data() + i * tv, in.v.data() + i * tv, want.data() + i * l.bytes);
      }
      const std::size_t differing = records_agree(p, got.data(), want.data(), tiles);
      EXPECT_LE(differing, 16 * ((tiles + 127) / 128))
          << t.name << " " << to_string(p.preset) << " D=" << p.head_dim << " iters "
          << p.sinkhorn_iters;
      // Deterministic: the same tile gives the same bytes.
      std::vector<std::uint8_t> again(l.bytes);
      cpu::simd::quantize_tile(p, in.k.data(), in.v.data(), again.data());
      EXPECT_EQ(0, std::memcmp(again.data(), got.data(), l.bytes)) << t.name;
    }
  }
}

TEST(SimdAgreement, DequantizeIsBitIdenticalInBothFrames) {
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    for (const CodecParams& p : kGeometries) {
      const RecordLayout l = RecordLayout::make(p);
      const std::size_t tiles = 3, tv = std::size_t(p.group()) * p.head_dim;
      const Tiles in = make_tiles(p, tiles, 7);
      std::vector<std::uint8_t> rec(tiles * l.bytes);
      for (std::size_t i = 0; i < tiles; ++i)
        quantize_tile(p, in.k.data() + i * tv, in.v.data() + i * tv, rec.data() + i * l.bytes);
      for (Frame frame : {Frame::rotated, Frame::original}) {
        std::vector<half_bits> kg(tv), vg(tv), kw(tv), vw(tv);
        std::vector<float> kf(tv), vf(tv);
        for (std::size_t i = 0; i < tiles; ++i) {
          cpu::simd::dequantize_tile(p, rec.data() + i * l.bytes, kg.data(), vg.data(), frame);
          dequantize_tile(p, rec.data() + i * l.bytes, kf.data(), vf.data(), frame);
          floats_to_halves(kf.data(), kw.data(), tv);
          floats_to_halves(vf.data(), vw.data(), tv);
          EXPECT_EQ(kg, kw) << t.name << " K " << to_string(p.preset) << " D=" << p.head_dim;
          EXPECT_EQ(vg, vw) << t.name << " V " << to_string(p.preset) << " D=" << p.head_dim;
        }
      }
    }
  }
}

TEST(SimdAgreement, RotationIsBitIdentical) {
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    for (int D : {64, 128, 256}) {
      const std::size_t rows = 33;
      auto x = gaussian_rows(rows, D, 11, {0, 3}, 50.0f);
      std::vector<float> a = x, b = x;
      cpu::simd::fwht_rows(a.data(), rows, D);
      for (std::size_t r = 0; r < rows; ++r) fwht_inplace(b.data() + r * D, D);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << t.name << " D=" << D;
      std::vector<half_bits> hg(x.size()), hw(x.size());
      cpu::simd::rotate_rows(x.data(), hg.data(), rows, D);
      rotate_rows(x.data(), hw.data(), rows, D);
      EXPECT_EQ(hg, hw) << t.name << " f32 D=" << D;
      const auto xh = to_half(x);
      cpu::simd::rotate_rows(xh.data(), hg.data(), rows, D);
      rotate_rows(xh.data(), hw.data(), rows, D);
      EXPECT_EQ(hg, hw) << t.name << " f16 D=" << D;
    }
  }
}

TEST(SimdAgreement, SameErrorsAsTheReference) {
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    const CodecParams p{Preset::k4v2_g128, 128, 8};
    const RecordLayout l = RecordLayout::make(p);
    Tiles in = make_tiles(p, 1, 3);
    std::vector<std::uint8_t> rec(l.bytes);
    in.v[5 * 128 + 9] = 0x7E00;  // NaN at token 5, channel 9
    try {
      cpu::simd::quantize_tile(p, in.k.data(), in.v.data(), rec.data());
      ADD_FAILURE() << t.name << ": no error for NaN";
    } catch (const NonFiniteInput& e) {
      EXPECT_NE(std::string(e.what()).find("token 5 of the tile, channel 9"), std::string::npos)
          << e.what();
    }
    in = make_tiles(p, 1, 3);
    quantize_tile(p, in.k.data(), in.v.data(), rec.data());
    const half_bits inf = 0x7C00;
    std::memcpy(rec.data() + l.zp_v + 2 * 17, &inf, 2);
    std::vector<half_bits> k(std::size_t(128) * 128), v(k.size());
    try {
      cpu::simd::dequantize_tile(p, rec.data(), k.data(), v.data(), Frame::rotated);
      ADD_FAILURE() << t.name << ": no error for an Inf scale";
    } catch (const CorruptRecord& e) {
      EXPECT_NE(std::string(e.what()).find("zp_V[17]"), std::string::npos) << e.what();
    }
  }
}

// A batch of sequences over one record pool and fp16 sink/tail pools, as the cache lays them out.
struct AttendCase {
  CodecParams p{Preset::k4v2_g128, 128, 8};
  int Hq = 8, Hk = 2;
  std::vector<std::uint8_t> records;
  std::vector<std::int32_t> tables;
  std::vector<SeqInfo> info;
  std::vector<half_bits> sink, tail, sink_v, tail_v;
  std::vector<float> q;
  int max_blocks = 0;

  // lens: {sink_len, blocks, tail_len} per sequence.
  AttendCase(const CodecParams& params, int hq, int hk, const std::vector<std::array<int, 3>>& lens)
      : p(params), Hq(hq), Hk(hk) {
    const RecordLayout l = RecordLayout::make(p);
    const int G = p.group(), D = p.head_dim;
    const int S = int(lens.size());
    int blocks = 0;
    for (const auto& s : lens) {
      blocks += s[1];
      max_blocks = std::max(max_blocks, s[1]);
    }
    max_blocks = std::max(max_blocks, 1);
    const Tiles tl = make_tiles(p, std::size_t(std::max(blocks, 1)) * Hk, 55);
    records.resize(std::size_t(std::max(blocks, 1)) * Hk * l.bytes);
    const std::size_t tv = std::size_t(G) * D;
    for (std::size_t i = 0; i < std::size_t(std::max(blocks, 1)) * Hk; ++i)
      quantize_tile(p, tl.k.data() + i * tv, tl.v.data() + i * tv, records.data() + i * l.bytes);
    // Block ids in reverse order, so tables are not the identity.
    tables.assign(std::size_t(S) * max_blocks, 0);
    int next = blocks - 1;
    for (int s = 0; s < S; ++s)
      for (int j = 0; j < lens[std::size_t(s)][1]; ++j)
        tables[std::size_t(s) * max_blocks + j] = next--;
    const std::size_t pool_rows = std::size_t(S) * Hk * G;
    auto rows = [&](std::uint32_t seed, float gain) {
      auto f = gaussian_rows(pool_rows, D, seed, {2}, gain);
      std::vector<half_bits> h(f.size());
      rotate_rows(f.data(), h.data(), pool_rows, D);
      return h;
    };
    sink = rows(61, 5.0f);
    sink_v = rows(62, 2.0f);
    tail = rows(63, 5.0f);
    tail_v = rows(64, 2.0f);
    for (int s = 0; s < S; ++s)
      info.push_back(
          {s, lens[std::size_t(s)][0], lens[std::size_t(s)][1], lens[std::size_t(s)][2]});
    q = gaussian_rows(std::size_t(S) * Hq, D, 77, {}, 1.0f);
    for (auto& x : q) x *= 0.5f;
  }

  cpu::AttendRecordsHost host(std::vector<float>& out) const {
    const RecordLayout l = RecordLayout::make(p);
    cpu::AttendRecordsHost h;
    h.params = p;
    h.num_seqs = int(info.size());
    h.num_q_heads = Hq;
    h.num_kv_heads = Hk;
    h.scale = 1.0f / std::sqrt(float(p.head_dim));
    h.q = q.data();
    out.assign(std::size_t(h.num_seqs) * Hq * p.head_dim, 0.0f);
    h.out = out.data();
    h.records = records.data();
    h.block_tables = tables.data();
    h.sink = sink.data();
    h.tail = tail.data();
    h.sink_v = sink_v.data();
    h.tail_v = tail_v.data();
    h.pools.max_blocks = max_blocks;
    h.pools.sink_capacity = h.pools.tail_capacity = p.group();
    h.pools.blocks = records.size() / (std::size_t(Hk) * l.bytes);
    h.pools.slots = std::size_t(h.num_seqs);
    h.seq_info = info.data();
    return h;
  }
};

double max_relative(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, double(std::fabs(a[i] - b[i])));
    den = std::max(den, double(std::fabs(b[i])));
  }
  return den == 0 ? num : num / den;
}

TEST(SimdAgreement, FusedAttentionWithin1e5OfTheReference) {
  ThreadPool pool(3);
  struct Shape {
    CodecParams p;
    int hq, hk;
  };
  const Shape shapes[] = {{{Preset::k4v2_g128, 128, 8}, 8, 2},
                          {{Preset::k4v4_g64, 64, 8}, 4, 4},
                          {{Preset::k2v2_g128, 256, 8}, 6, 1},
                          {{Preset::k4v2_g128, 128, 8}, 10, 2}};
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    for (const Shape& sh : shapes) {
      const int G = sh.p.group();
      const AttendCase c(sh.p, sh.hq, sh.hk, {{G, 5, 37}, {50, 0, 0}, {G, 2, G - 1}, {0, 0, 0}});
      std::vector<float> got, want;
      cpu::attend_records(c.host(got), pool, cpu::Kernels::simd);
      cpu::attend_records(c.host(want), pool, cpu::Kernels::reference);
      EXPECT_LE(max_relative(got, want), 1e-5)
          << t.name << " " << to_string(sh.p.preset) << " D=" << sh.p.head_dim << " Hq " << sh.hq
          << " Hk " << sh.hk;
      // The empty sequence gets a zero output on both paths.
      const std::size_t last = std::size_t(3) * sh.hq * sh.p.head_dim;
      for (std::size_t i = last; i < got.size(); ++i) ASSERT_EQ(got[i], 0.0f);
    }
  }
}

TEST(SimdAgreement, Fp16AttentionWithin1e5OfTheReference) {
  ThreadPool pool(2);
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    for (int D : {64, 128, 256}) {
      const int S = 3, Hq = 8, Hk = 2, cap = 300;
      const auto kf = gaussian_rows(std::size_t(S) * Hk * cap, D, 5, {1}, 4.0f);
      const auto vf = gaussian_rows(std::size_t(S) * Hk * cap, D, 6, {}, 1.0f);
      const auto k = to_half(kf), v = to_half(vf);
      const auto q = gaussian_rows(std::size_t(S) * Hq, D, 8, {}, 1.0f);
      const std::vector<std::int32_t> lens = {300, 1, 129};
      for (Frame frame : {Frame::original, Frame::rotated}) {
        std::vector<float> got(std::size_t(S) * Hq * D), want(got.size());
        cpu::AttendFp16Host h;
        h.num_seqs = S;
        h.num_q_heads = Hq;
        h.num_kv_heads = Hk;
        h.head_dim = D;
        h.scale = 1.0f / std::sqrt(float(D));
        h.q = q.data();
        h.k = k.data();
        h.v = v.data();
        h.capacity = cap;
        h.seq_lens = lens.data();
        h.kv_frame = frame;
        h.out = got.data();
        cpu::attend_fp16(h, pool, cpu::Kernels::simd);
        h.out = want.data();
        cpu::attend_fp16(h, pool, cpu::Kernels::reference);
        EXPECT_LE(max_relative(got, want), 1e-5) << t.name << " D=" << D;
      }
    }
  }
}

TEST(SimdAgreement, FusedAttentionReportsCorruptScalesLikeTheReference) {
  ThreadPool pool(2);
  const CodecParams p{Preset::k4v2_g128, 128, 8};
  AttendCase c(p, 8, 2, {{128, 3, 5}});
  const RecordLayout l = RecordLayout::make(p);
  const half_bits nan = 0x7E00;
  std::memcpy(c.records.data() + l.bytes + l.s_row_k + 2 * 4, &nan, 2);
  for (const auto& t : targets()) {
    ForcedTarget forced(t);
    std::vector<float> out;
    EXPECT_THROW(cpu::attend_records(c.host(out), pool, cpu::Kernels::simd), CorruptRecord)
        << t.name;
  }
  std::vector<float> out;
  EXPECT_THROW(cpu::attend_records(c.host(out), pool, cpu::Kernels::reference), CorruptRecord);
}

}  // namespace
}  // namespace kvarn_cl::test
