// Row-wise min/max rounding (SPEC §2.4) and code packing (SPEC §2.5).
#include <algorithm>
#include <cmath>
#include <cstring>

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
