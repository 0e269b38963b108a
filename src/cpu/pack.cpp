// Row-wise min/max rounding (SPEC §2.4) and code packing (SPEC §2.5).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/codec_detail.hpp"
#include "cpu/unpack_floats.hpp"
#include "kvarn_cl/codec.hpp"

namespace kvarn_cl::detail {

RowQuant quantize_row(const float* row, int n, int bits, std::uint8_t* codes) noexcept {
  const auto [mn, mx] = std::minmax_element(row, row + n);
  const float lo = *mn;
  const float levels = float((1 << bits) - 1);
  const float scale = std::max((*mx - lo) / levels, 1e-10f);
  for (int i = 0; i < n; ++i) {
    // std::nearbyint rounds half to even in the default rounding mode.
    const float q = std::nearbyint((row[i] - lo) / scale);
    codes[i] = static_cast<std::uint8_t>(std::clamp(q, 0.0f, levels));
  }
  return {lo, scale};
}

void pack_codes(const std::uint8_t* codes, int n, int bits, std::uint8_t* out) noexcept {
  const int per_byte = 8 / bits;
  std::memset(out, 0, std::size_t(n / per_byte));
  for (int c = 0; c < n; ++c)
    out[c / per_byte] |= static_cast<std::uint8_t>(codes[c] << ((c % per_byte) * bits));
}

void unpack_codes(const std::uint8_t* packed, int n, int bits, std::uint8_t* codes) noexcept {
  const int per_byte = 8 / bits;
  const unsigned mask = (1u << bits) - 1u;
  for (int c = 0; c < n; ++c)
    codes[c] = static_cast<std::uint8_t>((packed[c / per_byte] >> ((c % per_byte) * bits)) & mask);
}

}  // namespace kvarn_cl::detail

namespace kvarn_cl::cpu {
namespace {

// The tables below and unpack_codes_to_floats' switch cover the stated code widths exactly.
static_assert(kSupportedCodeBits.size() == 2 && kSupportedCodeBits[0] == 2 &&
                  kSupportedCodeBits[1] == 4,
              "unpack_codes_to_floats has tables for 2- and 4-bit codes: add one for a new width");

// A byte holds 2 four-bit or 4 two-bit codes, lowest index in the lowest bits.
struct CodeTables {
  float four[256][2];
  float two[256][4];
};

const CodeTables& code_tables() {
  static const CodeTables tables = [] {
    CodeTables t{};
    for (int b = 0; b < 256; ++b) {
      for (int i = 0; i < 2; ++i) t.four[b][i] = float((b >> (4 * i)) & 0xF);
      for (int i = 0; i < 4; ++i) t.two[b][i] = float((b >> (2 * i)) & 0x3);
    }
    return t;
  }();
  return tables;
}

}  // namespace

void unpack_codes_to_floats(const std::uint8_t* packed, int n, int bits, float* out) noexcept {
  const CodeTables& t = code_tables();
  switch (bits) {
    case 4:
      for (int i = 0; i < n / 2; ++i)
        std::memcpy(out + 2 * i, t.four[packed[i]], 2 * sizeof(float));
      return;
    case 2:
      for (int i = 0; i < n / 4; ++i) std::memcpy(out + 4 * i, t.two[packed[i]], 4 * sizeof(float));
      return;
    default:  // unreachable: CodecParams::validate refuses other widths before any codec call
      std::fill(out, out + n, 0.0f);
  }
}

}  // namespace kvarn_cl::cpu
