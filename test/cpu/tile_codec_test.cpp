// The whole tile codec: hand-computed records, determinism, batch (SIMD) against single tiles (reference), error handling, and
// the accuracy property of SPEC §5 (KVarN beats plain min/max rounding on outlier tiles).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/record_agreement.hpp"
#include "common/test_support.hpp"
#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

using namespace kvarn_cl;

namespace {

std::vector<float> record_halves(const std::vector<std::uint8_t>& rec, std::size_t off, int n) {
  std::vector<half_bits> h(static_cast<std::size_t>(n));
  std::memcpy(h.data(), rec.data() + off, h.size() * 2);
  return test::to_float(h);
}

// Plain per-row min/max rounding without rotation or normalization, decoded back.
std::vector<float> plain_minmax(const std::vector<float>& rows_by_cols, int rows, int cols,
                                int bits) {
  std::vector<float> out(rows_by_cols.size());
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
  for (int r = 0; r < rows; ++r) {
    const float* x = rows_by_cols.data() + std::size_t(r) * cols;
    const auto rq = detail::quantize_row(x, cols, bits, codes.data());
    for (int c = 0; c < cols; ++c)
      out[std::size_t(r) * cols + c] = float(codes[std::size_t(c)]) * rq.scale + rq.lo;
  }
  return out;
}

std::vector<float> transpose(const std::vector<float>& m, int rows, int cols) {
  std::vector<float> t(m.size());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) t[std::size_t(c) * rows + r] = m[std::size_t(r) * cols + c];
  return t;
}

}  // namespace

TEST(TileCodec, HandComputedRecordWithoutNormalization) {
  // sinkhorn_iters = 0 leaves bc = br = 1, so the record is plain min/max rounding we can do by hand.
  // K[t][d] = (t mod 16)·0.25 − 1: every channel row is lo −1, hi 2.75, scale 0.25, codes t mod 16.
  // V[t][d] = (d mod 4)·0.5: every token row is lo 0, hi 1.5, scale 0.5, codes d mod 4.
  const CodecParams p{Preset::k4v2_g128, 64, 0};
  const RecordLayout l = RecordLayout::make(p);
  const int G = 128, D = 64;
  std::vector<half_bits> k(std::size_t(G) * D), v(std::size_t(G) * D);
  for (int t = 0; t < G; ++t)
    for (int d = 0; d < D; ++d) {
      k[std::size_t(t) * D + d] = float_to_half(float(t % 16) * 0.25f - 1.0f);
      v[std::size_t(t) * D + d] = float_to_half(float(d % 4) * 0.5f);
    }
  std::vector<std::uint8_t> rec(l.bytes, 0xCD);
  quantize_tile(p, k.data(), v.data(), rec.data());
  for (int d = 0; d < D; ++d)
    for (std::size_t b = 0; b < l.k_row_bytes; ++b) {
      // Byte b holds tokens 2b (low nibble) and 2b+1 (high nibble).
      const unsigned lo = (2 * b) % 16, hi = (2 * b + 1) % 16;
      ASSERT_EQ(rec[l.k_codes + std::size_t(d) * l.k_row_bytes + b], lo | (hi << 4))
          << d << ' ' << b;
    }
  for (float s : record_halves(rec, l.s_col_k, D)) EXPECT_EQ(s, 0.25f);
  for (float s : record_halves(rec, l.zp_k, D)) EXPECT_EQ(s, -1.0f);
  for (float s : record_halves(rec, l.s_row_k, G)) EXPECT_EQ(s, 1.0f);
  for (std::size_t i = 0; i < std::size_t(G) * l.v_row_bytes; ++i)
    ASSERT_EQ(rec[l.v_codes + i], 0xE4);
  for (float s : record_halves(rec, l.s_col_v, D)) EXPECT_EQ(s, 1.0f);
  for (float s : record_halves(rec, l.s_row_v, G)) EXPECT_EQ(s, 0.5f);
  for (float s : record_halves(rec, l.zp_v, G)) EXPECT_EQ(s, 0.0f);

  // This data is exactly representable, so decoding reproduces it exactly.
  std::vector<float> kd(k.size()), vd(v.size());
  dequantize_tile(p, rec.data(), kd.data(), vd.data(), Frame::rotated);
  EXPECT_EQ(kd, test::to_float(k));
  EXPECT_EQ(vd, test::to_float(v));
}

class TileCodecAllPresets : public ::testing::TestWithParam<std::tuple<Preset, int>> {};

TEST_P(TileCodecAllPresets, DeterministicBatchEqualsSingleAndDecodesClose) {
  const auto [preset, D] = GetParam();
  const CodecParams p{preset, D, 8};
  const RecordLayout l = RecordLayout::make(p);
  const int G = p.group();
  const std::size_t tiles = 5, tv = std::size_t(G) * D;
  auto kf = test::gaussian_rows(tiles * G, D, 21, {2, 9}, 20.0f);
  auto vf = test::gaussian_rows(tiles * G, D, 22, {5}, 10.0f);
  std::vector<half_bits> k(kf.size()), v(vf.size());
  rotate_rows(kf.data(), k.data(), tiles * G, D);
  rotate_rows(vf.data(), v.data(), tiles * G, D);

  std::vector<std::uint8_t> a(tiles * l.bytes), b(tiles * l.bytes);
  quantize_tiles(p, k.data(), v.data(), tiles, a.data(), CpuThreads{3});
  quantize_tiles(p, k.data(), v.data(), tiles, b.data(), CpuThreads{1});
  EXPECT_EQ(a, b);
  // The batch runs the SIMD codec: the reference's records except at rounding ties (SPEC §5).
  std::vector<std::uint8_t> ref(tiles * l.bytes);
  for (std::size_t i = 0; i < tiles; ++i)
    quantize_tile(p, k.data() + i * tv, v.data() + i * tv, ref.data() + i * l.bytes);
  EXPECT_LE(test::records_agree(p, a.data(), ref.data(), tiles), 16u);

  // Original-frame decode reconstructs the input; error bounds for 4- and 2-bit codes.
  std::vector<half_bits> kh(tiles * tv), vh(tiles * tv);
  dequantize_tiles(p, a.data(), tiles, kh.data(), vh.data(), Frame::original, CpuThreads{2});
  const double k_err = relative_error(test::to_float(kh), kf);
  const double v_err = relative_error(test::to_float(vh), vf);
  // 2-bit min/max over 256 Gaussian channels has a step of ~1.9σ, i.e. ~0.55σ RMS error.
  EXPECT_LT(k_err, p.k_bits() == 4 ? 0.12 : 0.6) << "K";
  EXPECT_LT(v_err, p.v_bits() == 4 ? 0.12 : 0.6) << "V";
  // Rotated-frame decode rotated back equals the original-frame decode.
  std::vector<float> kr(tv), vr(tv), ko(tv), vo(tv);
  dequantize_tile(p, a.data(), kr.data(), vr.data(), Frame::rotated);
  dequantize_tile(p, a.data(), ko.data(), vo.data(), Frame::original);
  for (int t = 0; t < G; ++t) fwht_inplace(kr.data() + std::size_t(t) * D, D);
  for (std::size_t i = 0; i < tv; ++i) EXPECT_FLOAT_EQ(kr[i], ko[i]);
}

INSTANTIATE_TEST_SUITE_P(All, TileCodecAllPresets,
                         ::testing::Combine(::testing::Values(Preset::k4v2_g128, Preset::k4v4_g128,
                                                              Preset::k2v2_g128, Preset::k4v2_g64,
                                                              Preset::k4v4_g64),
                                            ::testing::Values(64, 128, 256)));

TEST(TileCodec, BeatsPlainMinMaxOnOutlierTiles) {
  // SPEC §5: N(0,1) tiles with a few channels ×20; KVarN (rotation + normalization + rounding)
  // against plain per-row min/max at the same bits (K per channel, V per token), no rotation.
  for (Preset preset : {Preset::k4v2_g128, Preset::k4v4_g128, Preset::k4v2_g64}) {
    const CodecParams p{preset, 128, 8};
    const int G = p.group(), D = 128;
    double kvarn_num = 0, plain_num = 0, den = 0;
    for (std::uint32_t seed = 100; seed < 104; ++seed) {
      auto kf = test::gaussian_rows(G, D, seed, {3, 40, 77}, 20.0f);
      auto vf = test::gaussian_rows(G, D, seed + 50, {3, 40, 77}, 20.0f);
      std::vector<half_bits> k(kf.size()), v(vf.size());
      rotate_rows(kf.data(), k.data(), std::size_t(G), D);
      rotate_rows(vf.data(), v.data(), std::size_t(G), D);
      std::vector<std::uint8_t> rec(RecordLayout::make(p).bytes);
      quantize_tile(p, k.data(), v.data(), rec.data());
      std::vector<float> kd(kf.size()), vd(vf.size());
      dequantize_tile(p, rec.data(), kd.data(), vd.data(), Frame::original);
      auto kp = transpose(plain_minmax(transpose(kf, G, D), D, G, p.k_bits()), D, G);
      auto vp = plain_minmax(vf, G, D, p.v_bits());
      for (std::size_t i = 0; i < kf.size(); ++i) {
        kvarn_num += std::pow(kd[i] - kf[i], 2) + std::pow(vd[i] - vf[i], 2);
        plain_num += std::pow(kp[i] - kf[i], 2) + std::pow(vp[i] - vf[i], 2);
        den += kf[i] * kf[i] + vf[i] * vf[i];
      }
    }
    const double kvarn_err = std::sqrt(kvarn_num / den), plain_err = std::sqrt(plain_num / den);
    EXPECT_LT(kvarn_err, plain_err) << to_string(preset);
    std::printf("%s: KVarN relative error %.4f, plain min/max %.4f\n", to_string(preset).c_str(),
                kvarn_err, plain_err);
  }
}

TEST(TileCodec, RejectsNonFiniteInputNamingThePosition) {
  const CodecParams p{Preset::k4v2_g64, 64, 8};
  std::vector<half_bits> k(64 * 64, float_to_half(0.5f)), v(64 * 64, float_to_half(0.25f));
  v[5 * 64 + 3] = 0x7E00;  // NaN
  std::vector<std::uint8_t> rec(RecordLayout::make(p).bytes);
  try {
    quantize_tile(p, k.data(), v.data(), rec.data());
    FAIL();
  } catch (const NonFiniteInput& e) {
    EXPECT_NE(std::string(e.what()).find("values"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("token 5"), std::string::npos) << e.what();
  }
  k[0] = 0x7C00;  // +Inf
  EXPECT_THROW(quantize_tile(p, k.data(), v.data(), rec.data()), NonFiniteInput);
}

TEST(TileCodec, CorruptScalesAreReported) {
  const CodecParams p{Preset::k4v2_g64, 64, 8};
  const RecordLayout l = RecordLayout::make(p);
  auto kf = test::gaussian_rows(64, 64, 1), vf = test::gaussian_rows(64, 64, 2);
  auto k = test::to_half(kf), v = test::to_half(vf);
  std::vector<std::uint8_t> rec(l.bytes);
  quantize_tile(p, k.data(), v.data(), rec.data());
  rec[l.zp_v + 1] = 0x7C;  // high byte of zp_V[0] -> exponent all ones
  std::vector<float> kd(64 * 64), vd(64 * 64);
  try {
    dequantize_tile(p, rec.data(), kd.data(), vd.data());
    FAIL();
  } catch (const CorruptRecord& e) {
    EXPECT_NE(std::string(e.what()).find("zp_V[0]"), std::string::npos) << e.what();
  }
}
