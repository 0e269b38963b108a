// Finite in, finite out (docs/API.md, "Robustness"): valid input at the edge of the codec's range
// decodes to finite fp16, records from outside with scales near the fp16 maximum decode to finite
// fp16, and scale vectors that cannot come from the encoder (NaN, Inf, negative) are corrupt.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/test_support.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

using namespace kvarn_cl;

namespace {

bool all_finite(const std::vector<half_bits>& h) {
  for (half_bits x : h)
    if ((x & 0x7C00u) == 0x7C00u) return false;
  return true;
}

void put_half(std::vector<std::uint8_t>& rec, std::size_t offset, half_bits h) {
  std::memcpy(rec.data() + offset, &h, 2);
}

// The case: N(0,1) keys with 65504 in channel 0 of every other token (a finite, valid
// fp16 input whose rotated rows stay within the codec's bound).
std::vector<half_bits> spiky_keys_rotated(int G, int D) {
  auto k = test::gaussian_rows(std::size_t(G), D, 31);
  for (int t = 0; t < G; t += 2) k[std::size_t(t) * D] = 65504.0f;
  std::vector<half_bits> rot(k.size());
  rotate_rows(k.data(), rot.data(), std::size_t(G), D);
  return rot;
}

}  // namespace

TEST(FiniteDecode, ValidInputAtTheEdgeDecodesFinite) {
  for (Preset preset : all_presets()) {
    SCOPED_TRACE(to_string(preset));
    const CodecParams p{preset, 128, 8};
    const RecordLayout l = RecordLayout::make(p);
    const auto k = spiky_keys_rotated(l.group, l.head_dim);
    const auto v = test::to_half(test::gaussian_rows(std::size_t(l.group), l.head_dim, 32));
    std::vector<std::uint8_t> rec(l.bytes);
    quantize_tile(p, k.data(), v.data(), rec.data());
    EXPECT_NO_THROW(validate_records(p, rec.data(), 1));
    std::vector<half_bits> ko(k.size()), vo(v.size());
    for (Frame f : {Frame::rotated, Frame::original}) {
      dequantize_tiles(p, rec.data(), 1, ko.data(), vo.data(), f);
      EXPECT_TRUE(all_finite(ko)) << (f == Frame::rotated ? "rotated" : "original");
      EXPECT_TRUE(all_finite(vo));
    }
  }
}

TEST(FiniteDecode, ScalesNearTheFp16MaximumDecodeFinite) {
  const CodecParams p{Preset::k4v4_g64, 64, 8};
  const RecordLayout l = RecordLayout::make(p);
  std::vector<std::uint8_t> rec(l.bytes, 0xFF);  // every code at its maximum
  const half_bits big = 0x7BFF;                  // 65504
  for (int d = 0; d < l.head_dim; ++d) {
    put_half(rec, l.s_col_k + 2 * std::size_t(d), big);
    put_half(rec, l.zp_k + 2 * std::size_t(d), big);
    put_half(rec, l.s_col_v + 2 * std::size_t(d), big);
  }
  for (int t = 0; t < l.group; ++t) {
    put_half(rec, l.s_row_k + 2 * std::size_t(t), big);
    put_half(rec, l.s_row_v + 2 * std::size_t(t), big);
    put_half(rec, l.zp_v + 2 * std::size_t(t), half_bits(big | 0x8000u));  // -65504
  }
  std::vector<half_bits> ko(std::size_t(l.group) * l.head_dim), vo(ko.size());
  for (Frame f : {Frame::rotated, Frame::original}) {
    dequantize_tiles(p, rec.data(), 1, ko.data(), vo.data(), f);
    EXPECT_TRUE(all_finite(ko));
    EXPECT_TRUE(all_finite(vo));
    EXPECT_EQ(ko[0], 0x7BFF);  // saturated, not +Inf
  }
}

TEST(FiniteDecode, InputBeyondTheCodecBoundIsRefused) {
  const CodecParams p{Preset::k4v2_g64, 64, 8};
  std::vector<half_bits> k(64 * 64, float_to_half(0.5f)), v(64 * 64, float_to_half(0.25f));
  k[7 * 64 + 2] = float_to_half(60000.0f);  // finite, but its zero point would overflow fp16
  std::vector<std::uint8_t> rec(RecordLayout::make(p).bytes);
  try {
    quantize_tile(p, k.data(), v.data(), rec.data());
    ADD_FAILURE() << "60000 was quantized";
  } catch (const NonFiniteInput& e) {
    EXPECT_NE(std::string(e.what()).find("token 7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("48000"), std::string::npos) << e.what();
  }
  k[7 * 64 + 2] = float_to_half(kMaxRotatedMagnitude);  // the bound itself is accepted
  EXPECT_NO_THROW(quantize_tile(p, k.data(), v.data(), rec.data()));
  EXPECT_NO_THROW(validate_records(p, rec.data(), 1));
}

TEST(FiniteDecode, NegativeScalesAreCorrupt) {
  const CodecParams p{Preset::k4v2_g64, 64, 8};
  const RecordLayout l = RecordLayout::make(p);
  const auto k = test::to_half(test::gaussian_rows(64, 64, 33));
  const auto v = test::to_half(test::gaussian_rows(64, 64, 34));
  std::vector<std::uint8_t> good(2 * l.bytes);
  quantize_tile(p, k.data(), v.data(), good.data());
  quantize_tile(p, v.data(), k.data(), good.data() + l.bytes);
  ASSERT_NO_THROW(validate_records(p, good.data(), 2));
  std::vector<half_bits> ko(2 * 64 * 64), vo(ko.size());
  struct Field {
    std::size_t offset;
    const char* name;
  };
  for (const Field f : {Field{l.s_col_k, "s_col_K"}, Field{l.s_row_k, "s_row_K"},
                        Field{l.s_col_v, "s_col_V"}, Field{l.s_row_v, "s_row_V"}}) {
    SCOPED_TRACE(f.name);
    auto rec = good;
    put_half(rec, l.bytes + f.offset + 2 * 3, float_to_half(-0.5f));  // record 1, index 3
    try {
      dequantize_tiles(p, rec.data(), 2, ko.data(), vo.data());
      ADD_FAILURE() << "a negative scale was decoded";
    } catch (const CorruptRecord& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(f.name) + "[3] is negative"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("record 1"), std::string::npos) << e.what();
    }
  }
  // Zero points may be negative; -0 is not negative.
  auto rec = good;
  put_half(rec, l.zp_k, float_to_half(-3.0f));
  put_half(rec, l.s_row_v, 0x8000);
  EXPECT_NO_THROW(validate_records(p, rec.data(), 2));
}
