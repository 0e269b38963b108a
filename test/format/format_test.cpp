// Presets, record layout and fp16 conversion (SPEC §2.1, §2.5, §6).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/half.hpp"

using namespace kvarn_cl;

TEST(Preset, NamesRoundTrip) {
  for (Preset p : all_presets()) EXPECT_EQ(parse_preset(to_string(p)), p);
  EXPECT_EQ(to_string(Preset::k4v2_g128), "k4v2_g128");
  EXPECT_EQ(preset_info(Preset::k2v2_g128).k_bits, 2);
  EXPECT_EQ(preset_info(Preset::k4v4_g64).group, 64);
}

TEST(Preset, UnknownNameIsRejectedWithTheValue) {
  try {
    parse_preset("k3v2_g128", "--preset");
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("k3v2_g128"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("--preset"), std::string::npos);
    EXPECT_EQ(e.status(), Status::invalid_argument);
  }
}

// The code widths are stated once (kSupportedCodeBits): every preset uses them, and a preset
// description with another width is refused with the preset, the field and the width named.
TEST(Preset, OnlyTheStatedCodeWidths) {
  EXPECT_EQ(kSupportedCodeBits, (std::array<int, 2>{2, 4}));
  for (Preset p : all_presets()) {
    EXPECT_TRUE(is_supported_code_bits(preset_info(p).k_bits)) << to_string(p);
    EXPECT_TRUE(is_supported_code_bits(preset_info(p).v_bits)) << to_string(p);
    EXPECT_NO_THROW(validate_preset_info(preset_info(p)));
  }
  for (int bits : {0, 1, 3, 5, 8, -4}) EXPECT_FALSE(is_supported_code_bits(bits)) << bits;
  const PresetInfo k3{Preset::k4v2_g128, "k3v2_g128", 3, 2, 128, false};
  try {
    validate_preset_info(k3);
    FAIL() << "a 3-bit preset was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(),
                 "invalid preset k3v2_g128 k_bits 3: supported code widths are 2 and 4 bits");
  }
  const PresetInfo v8{Preset::k4v2_g128, "k4v8_g128", 4, 8, 128, false};
  EXPECT_THROW(validate_preset_info(v8), InvalidArgument);
  const PresetInfo g32{Preset::k4v2_g128, "k4v2_g32", 4, 2, 32, false};
  try {
    validate_preset_info(g32);
    FAIL() << "a 32-token tile was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("group 32"), std::string::npos) << e.what();
  }
}

TEST(HeadDim, OnlySupportedPowersOfTwo) {
  for (int d : {64, 128, 256}) EXPECT_NO_THROW(validate_head_dim(d));
  for (int d : {0, -128, 96, 100, 32, 512, 1}) {
    try {
      validate_head_dim(d);
      FAIL() << d;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(std::to_string(d)), std::string::npos) << e.what();
    }
  }
  EXPECT_NE(std::string([] {
              try {
                validate_head_dim(96);
              } catch (const Error& e) {
                return std::string(e.what());
              }
              return std::string();
            }())
                .find("power of two"),
            std::string::npos);
}

TEST(RecordLayout, SizesMatchTheFormulaForEveryPresetAndHeadDim) {
  for (Preset p : all_presets()) {
    for (int D : {64, 128, 256}) {
      const PresetInfo& info = preset_info(p);
      const RecordLayout l = RecordLayout::make({p, D, 8});
      const std::size_t G = std::size_t(info.group);
      EXPECT_EQ(l.bytes, D * G * std::size_t(info.k_bits + info.v_bits) / 8 + 6 * D + 6 * G)
          << info.name << " D=" << D;
      // Fields in SPEC order, no gaps.
      EXPECT_EQ(l.k_codes, 0u);
      EXPECT_EQ(l.s_col_k, D * G * info.k_bits / 8);
      EXPECT_EQ(l.zp_k, l.s_col_k + 2 * D);
      EXPECT_EQ(l.s_row_k, l.zp_k + 2 * D);
      EXPECT_EQ(l.v_codes, l.s_row_k + 2 * G);
      EXPECT_EQ(l.s_col_v, l.v_codes + G * D * info.v_bits / 8);
      EXPECT_EQ(l.s_row_v, l.s_col_v + 2 * D);
      EXPECT_EQ(l.zp_v, l.s_row_v + 2 * G);
      EXPECT_EQ(l.bytes, l.zp_v + 2 * G);
    }
  }
}

TEST(RecordLayout, PublishedSizes) {
  EXPECT_EQ(RecordLayout::make({Preset::k4v2_g128, 128, 8}).bytes, 13824u);
  EXPECT_EQ(RecordLayout::make({Preset::k4v4_g128, 128, 8}).bytes, 17920u);
  EXPECT_EQ(RecordLayout::make({Preset::k4v2_g64, 128, 8}).bytes, 7296u);
  EXPECT_NEAR(RecordLayout::make({Preset::k4v2_g128, 128, 8}).compression(), 4.74, 0.005);
  EXPECT_NEAR(RecordLayout::make({Preset::k4v4_g128, 128, 8}).compression(), 3.66, 0.005);
}

TEST(CodecParams, RejectsBadIterationCounts) {
  EXPECT_THROW((CodecParams{Preset::k4v2_g128, 128, -1}.validate()), InvalidArgument);
  EXPECT_THROW((CodecParams{Preset::k4v2_g128, 128, 65}.validate()), InvalidArgument);
  EXPECT_THROW((CodecParams{Preset::k4v2_g128, 100, 8}.validate()), InvalidArgument);
}

TEST(Half, RoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3C00);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even mantissa (1.0).
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3·2^-11 is halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(float_to_half(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_half(-2.0f), 0xC000);
  for (std::uint32_t h = 0; h < 0x7C00; h += 7) {
    EXPECT_EQ(float_to_half(half_to_float(half_bits(h))), h);
  }
}

TEST(Half, BulkConversionMatchesTheScalarOneBitForBit) {
  // floats_to_halves may use F16C; it must round exactly like cl_half_from_float(RTE), including
  // ties, subnormals, overflow to Inf and NaN.
  std::vector<float> in;
  for (std::uint32_t bits = 0; bits < 0xFFFFFFFFu - 40009u; bits += 40009u) {
    float f;
    std::memcpy(&f, &bits, 4);
    in.push_back(f);
  }
  for (float f : {1.0f + std::ldexp(1.0f, -11), 65520.0f, 65519.0f, 1e-8f, -3e-5f, 0.0f, -0.0f})
    in.push_back(f);
  std::vector<half_bits> fast(in.size()), portable(in.size());
  floats_to_halves(in.data(), fast.data(), in.size());
  floats_to_halves_portable(in.data(), portable.data(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (std::isnan(in[i])) {
      EXPECT_EQ(fast[i] & 0x7C00, 0x7C00);
      EXPECT_NE(fast[i] & 0x03FF, 0);
      continue;
    }
    ASSERT_EQ(fast[i], portable[i]) << "value " << in[i];
  }
}
