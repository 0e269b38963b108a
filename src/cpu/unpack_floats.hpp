// Packed codes (SPEC §2.5) straight to floats through byte tables: the decode step shared by the
// reference attention and the SIMD dequantize.
#pragma once

#include <cstdint>

namespace kvarn_cl::cpu {

// n codes of `bits` bits (2 or 4) from packed bytes to floats 0..2^bits-1, in code order.
void unpack_codes_to_floats(const std::uint8_t* packed, int n, int bits, float* out) noexcept;

}  // namespace kvarn_cl::cpu
