// IEEE fp16 <-> fp32 on the host. Conversion to fp16 rounds to nearest even (SPEC §6), as
// CL/cl_half.h does with CL_HALF_RTE; fp16 -> fp32 is exact and served from a table.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvarn_cl {

using half_bits = std::uint16_t;

half_bits float_to_half(float f) noexcept;
float half_to_float(half_bits h) noexcept;

// Uses the CPU's F16C conversion where present (same rounding); the portable variant never does.
void floats_to_halves(const float* in, half_bits* out, std::size_t n) noexcept;
void floats_to_halves_portable(const float* in, half_bits* out, std::size_t n) noexcept;
void halves_to_floats(const half_bits* in, float* out, std::size_t n) noexcept;
// Like floats_to_halves, but finite values beyond the fp16 range saturate to ±65504 instead of
// becoming ±Inf (decoded values: a finite record always decodes to finite fp16). NaN stays NaN.
void floats_to_halves_saturated(const float* in, half_bits* out, std::size_t n) noexcept;

}  // namespace kvarn_cl
