// Rounding (SPEC §2.4) and packing (SPEC §2.5), including cases worked out by hand.
#include <gtest/gtest.h>

#include <random>

#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"

using namespace kvarn_cl;

TEST(Pack, FourBitEvenIndexIsTheLowNibble) {
  const std::uint8_t codes[4] = {0x1, 0x2, 0xA, 0xF};
  std::uint8_t out[2] = {0xEE, 0xEE};
  detail::pack_codes(codes, 4, 4, out);
  EXPECT_EQ(out[0], 0x21);
  EXPECT_EQ(out[1], 0xFA);
}

TEST(Pack, TwoBitLowestIndexInTheLowestBits) {
  const std::uint8_t codes[8] = {0, 1, 2, 3, 3, 3, 0, 1};
  std::uint8_t out[2];
  detail::pack_codes(codes, 8, 2, out);
  EXPECT_EQ(out[0], 0xE4);  // 0b11'10'01'00
  EXPECT_EQ(out[1], 0x4F);  // 0b01'00'11'11
}

TEST(Pack, RoundTripsForEveryWidthAndLength) {
  std::mt19937 rng(3);
  for (int bits : {2, 4}) {
    for (int n : {64, 128, 256}) {
      std::vector<std::uint8_t> codes(static_cast<std::size_t>(n)),
          back(static_cast<std::size_t>(n));
      for (auto& c : codes) c = std::uint8_t(rng() % (1u << bits));
      std::vector<std::uint8_t> packed(std::size_t(n * bits / 8));
      detail::pack_codes(codes.data(), n, bits, packed.data());
      detail::unpack_codes(packed.data(), n, bits, back.data());
      EXPECT_EQ(codes, back) << bits << " bits, " << n << " codes";
    }
  }
}

TEST(QuantizeRow, HandComputedTwoBitRowWithTies) {
  // lo = 0, hi = 3, scale = (3 - 0) / 3 = 1; 0.5 and 2.5 are ties and go to the even code.
  const float row[6] = {0.0f, 0.5f, 1.5f, 2.5f, 3.0f, 1.2f};
  std::uint8_t codes[6];
  const auto rq = detail::quantize_row(row, 6, 2, codes);
  EXPECT_EQ(rq.lo, 0.0f);
  EXPECT_EQ(rq.scale, 1.0f);
  const std::uint8_t expected[6] = {0, 0, 2, 2, 3, 1};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(codes[i], expected[i]) << i;
}

TEST(QuantizeRow, HandComputedFourBitRow) {
  // lo = -1, hi = 2.75, scale = 3.75 / 15 = 0.25: code = (x + 1) / 0.25.
  const float row[4] = {-1.0f, 2.75f, 0.0f, 1.3f};
  std::uint8_t codes[4];
  const auto rq = detail::quantize_row(row, 4, 4, codes);
  EXPECT_EQ(rq.lo, -1.0f);
  EXPECT_EQ(rq.scale, 0.25f);
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 15);
  EXPECT_EQ(codes[2], 4);
  EXPECT_EQ(codes[3], 9);  // 2.3 / 0.25 = 9.2
}

TEST(QuantizeRow, ConstantRowUsesTheScaleFloor) {
  const float row[3] = {2.0f, 2.0f, 2.0f};
  std::uint8_t codes[3];
  const auto rq = detail::quantize_row(row, 3, 4, codes);
  EXPECT_EQ(rq.lo, 2.0f);
  EXPECT_EQ(rq.scale, 1e-10f);
  for (auto c : codes) EXPECT_EQ(c, 0);
}
