// Input and record checks shared by the reference tile codec and its SIMD path, so both report
// the same errors with the same messages.
#pragma once

#include <cstdint>

#include "kvarn_cl/half.hpp"

namespace kvarn_cl::cpu {

inline bool is_finite_half(half_bits h) noexcept { return (h & 0x7C00u) != 0x7C00u; }

// Throws NonFiniteInput naming the token and channel of the first NaN/Inf of G rows of D values.
void check_finite_rows(const half_bits* rows, int G, int D, const char* which);

// n fp16 values of a record field to floats; throws CorruptRecord naming field[i] if one is
// NaN/Inf.
void load_record_halves(const std::uint8_t* src, int n, float* out, const char* field);

}  // namespace kvarn_cl::cpu
