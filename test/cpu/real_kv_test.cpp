// The tile codec on real keys and values: post-RoPE K and V of SmolLM2-135M-Instruct (head_dim 64)
// captured by `kvarn-eval --capture` from the GPL-3 text (test/data/README.md). Synthetic Gaussian
// tiles say little about the outlier structure of real keys; these tiles do. Bounds are the
// errors measured on 2026-11-22 (printed by each test) with about 25 % margin, so a regression in
// normalization, rounding or packing shows up here as a failure on real data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/test_support.hpp"
#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"

namespace kvarn_cl {
namespace {

constexpr int kD = 64;
constexpr int kTileTokens = 128;  // tokens per captured file

struct RealTile {
  std::string name;
  std::vector<half_bits> k_rot, v_rot;  // kTileTokens × kD, token-major, rotated frame
};

RealTile load_tile(const std::string& name) {
  RealTile t;
  t.name = name;
  const std::string path = std::string(KVARN_CL_SOURCE_DIR) + "/test/data/" + name + ".kv16";
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing test data file " << path;
  const std::size_t n = std::size_t(kTileTokens) * kD;
  t.k_rot.resize(n);
  t.v_rot.resize(n);
  f.read(reinterpret_cast<char*>(t.k_rot.data()), std::streamsize(n * 2));
  f.read(reinterpret_cast<char*>(t.v_rot.data()), std::streamsize(n * 2));
  EXPECT_TRUE(f.good()) << "truncated test data file " << path;
  return t;
}

// Layer 0 (value outliers), 7 and 19 and 26 (strongest key-channel outliers, max/median channel
// RMS 12-13), 29 (last layer).
const char* const kTiles[] = {"smollm2_L00_h0_t1", "smollm2_L00_h1_t1", "smollm2_L07_h1_t1",
                              "smollm2_L19_h0_t1", "smollm2_L26_h2_t1", "smollm2_L29_h2_t1"};

std::vector<float> rotate_back(const std::vector<half_bits>& rot, int tokens) {
  std::vector<float> out = test::to_float(rot);
  out.resize(std::size_t(tokens) * kD);
  for (int t = 0; t < tokens; ++t) fwht_inplace(out.data() + std::size_t(t) * kD, kD);
  return out;
}

// Plain min/max rounding without rotation or normalization (per channel for K across tokens,
// per token for V across channels), decoded: the baseline of SPEC §5.
void plain_round_trip(const std::vector<float>& k, const std::vector<float>& v, int G, int kb,
                      int vb, std::vector<float>& k_out, std::vector<float>& v_out) {
  k_out.resize(k.size());
  v_out.resize(v.size());
  std::vector<float> row(std::size_t(std::max(G, kD)));
  std::vector<std::uint8_t> codes(row.size());
  for (int d = 0; d < kD; ++d) {
    for (int t = 0; t < G; ++t) row[std::size_t(t)] = k[std::size_t(t) * kD + d];
    const auto q = detail::quantize_row(row.data(), G, kb, codes.data());
    for (int t = 0; t < G; ++t)
      k_out[std::size_t(t) * kD + d] = float(codes[std::size_t(t)]) * q.scale + q.lo;
  }
  for (int t = 0; t < G; ++t) {
    const auto q = detail::quantize_row(v.data() + std::size_t(t) * kD, kD, vb, codes.data());
    for (int d = 0; d < kD; ++d)
      v_out[std::size_t(t) * kD + d] = float(codes[std::size_t(d)]) * q.scale + q.lo;
  }
}

// Attention outputs of nq random queries over G tokens (original frame, scale 1/sqrt(D)).
std::vector<float> attend(const std::vector<float>& q, int nq, const std::vector<float>& k,
                          const std::vector<float>& v, int G) {
  std::vector<float> out(std::size_t(nq) * kD, 0.0f);
  std::vector<double> s(static_cast<std::size_t>(G));
  for (int i = 0; i < nq; ++i) {
    double mx = -1e300;
    for (int t = 0; t < G; ++t) {
      double dot = 0;
      for (int d = 0; d < kD; ++d)
        dot += double(q[std::size_t(i) * kD + d]) * k[std::size_t(t) * kD + d];
      s[std::size_t(t)] = dot / std::sqrt(double(kD));
      mx = std::max(mx, s[std::size_t(t)]);
    }
    double sum = 0;
    for (auto& x : s) sum += (x = std::exp(x - mx));
    for (int t = 0; t < G; ++t)
      for (int d = 0; d < kD; ++d)
        out[std::size_t(i) * kD + d] += float(s[std::size_t(t)] / sum) * v[std::size_t(t) * kD + d];
  }
  return out;
}

// Queries shaped like the model's: N(0,1) rows scaled to the RMS norm of the tile's keys, so
// scores span a realistic range (real attention is peaky; unit queries would flatten it).
std::vector<float> random_queries(int nq, const std::vector<float>& k, std::uint32_t seed) {
  double ss = 0;
  for (float x : k) ss += double(x) * x;
  const float key_rms = float(std::sqrt(ss / double(k.size())));
  std::vector<float> q = test::gaussian_rows(std::size_t(nq), kD, seed);
  for (auto& x : q) x *= key_rms;
  return q;
}

struct Errors {
  double k = 0, v = 0, attn = 0;
};

Errors kvarn_errors(const RealTile& tile, Preset preset) {
  CodecParams p;
  p.preset = preset;
  p.head_dim = kD;
  const int G = p.group();
  std::vector<std::uint8_t> rec(RecordLayout::make(p).bytes);
  quantize_tile(p, tile.k_rot.data(), tile.v_rot.data(), rec.data());
  std::vector<float> kh(std::size_t(G) * kD), vh(kh.size());
  dequantize_tile(p, rec.data(), kh.data(), vh.data(), Frame::original);
  const auto k = rotate_back(tile.k_rot, G), v = rotate_back(tile.v_rot, G);
  const auto q = random_queries(16, k, 7);
  return {relative_error(kh, k), relative_error(vh, v),
          relative_error(attend(q, 16, kh, vh, G), attend(q, 16, k, v, G))};
}

Errors plain_errors(const RealTile& tile, int G, int kb, int vb) {
  const auto k = rotate_back(tile.k_rot, G), v = rotate_back(tile.v_rot, G);
  std::vector<float> kh, vh;
  plain_round_trip(k, v, G, kb, vb, kh, vh);
  const auto q = random_queries(16, k, 7);
  return {relative_error(kh, k), relative_error(vh, v),
          relative_error(attend(q, 16, kh, vh, G), attend(q, 16, k, v, G))};
}

struct Bounds {
  Preset preset;
  double k, v, attn;
};

// Worst case over the six tiles, measured then given ~25 % margin (see the file comment).
const Bounds kBounds[] = {
    // measured worst (K, V, attention): k4v2_g128 0.074 0.461 0.403; k4v4_g128 0.074 0.092 0.164;
    // k2v2_g128 0.372 0.461 0.713; k4v2_g64 0.065 0.462 0.358; k4v4_g64 0.065 0.093 0.116.
    // 2-bit values are coarse (~46 % relative error per value); attention averages part of it away.
    {Preset::k4v2_g128, 0.093, 0.58, 0.50},  {Preset::k4v4_g128, 0.093, 0.115, 0.21},
    {Preset::k2v2_g128, 0.47, 0.58, 0.89},   {Preset::k4v2_g64, 0.081, 0.58, 0.45},
    {Preset::k4v4_g64, 0.081, 0.116, 0.145},
};

TEST(RealKv, ReconstructionAndAttentionErrorWithinMeasuredBounds) {
  for (const auto& b : kBounds) {
    Errors worst;
    for (const char* name : kTiles) {
      const RealTile tile = load_tile(name);
      const Errors e = kvarn_errors(tile, b.preset);
      std::printf("%-10s %s  K %.4f  V %.4f  attention %.4f\n", to_string(b.preset).c_str(), name,
                  e.k, e.v, e.attn);
      worst.k = std::max(worst.k, e.k);
      worst.v = std::max(worst.v, e.v);
      worst.attn = std::max(worst.attn, e.attn);
    }
    EXPECT_LE(worst.k, b.k) << to_string(b.preset);
    EXPECT_LE(worst.v, b.v) << to_string(b.preset);
    EXPECT_LE(worst.attn, b.attn) << to_string(b.preset);
  }
}

// SPEC §5's round-trip sanity asks KVarN to beat plain min/max rounding on synthetic tiles with
// outlier channels. On these real tiles the picture measured on 2026-11-22 is more nuanced, and
// this test pins it down:
//  - keys: plain per-channel rounding already gives every outlier channel its own scale, and the
//    rotation spreads the outliers over all channels, so KVarN's key error is 0.95-1.11x plain
//    (bound: 1.25x);
//  - values: per-token rounding suffers from channel outliers, which rotation + normalization
//    remove: 0.47x and 0.63x plain on the two layer-0 tiles (bound 0.75x), 0.79x summed over
//    all tiles (bound: below plain);
//  - attention output over the tile with random queries: 0.72x plain summed (bound 0.9x).
TEST(RealKv, KvarnAgainstPlainMinMaxOnRealTiles) {
  double kv_v = 0, plain_v = 0, kv_a = 0, plain_a = 0;
  for (const char* name : kTiles) {
    const RealTile tile = load_tile(name);
    const Errors kv = kvarn_errors(tile, Preset::k4v2_g128);
    const Errors plain = plain_errors(tile, kTileTokens, 4, 2);
    std::printf("%s  K %.4f vs plain %.4f   V %.4f vs plain %.4f   attention %.4f vs plain %.4f\n",
                name, kv.k, plain.k, kv.v, plain.v, kv.attn, plain.attn);
    EXPECT_LE(kv.k, 1.25 * plain.k) << name;
    if (std::string(name).rfind("smollm2_L00_", 0) == 0) {
      EXPECT_LT(kv.v, 0.75 * plain.v) << name;
    }
    kv_v += kv.v;
    plain_v += plain.v;
    kv_a += kv.attn;
    plain_a += plain.attn;
  }
  EXPECT_LT(kv_v, plain_v);
  EXPECT_LT(kv_a, 0.9 * plain_a);
}

}  // namespace
}  // namespace kvarn_cl
