#include "kvarn_cl/half.hpp"

#include <array>

#include <CL/cl_half.h>

namespace kvarn_cl {
namespace {

// fp16 -> fp32 is exact; a 256 KiB table built once makes the CPU codec's decode cheap.
const std::array<float, 65536>& half_table() {
  static const std::array<float, 65536> table = [] {
    std::array<float, 65536> t{};
    for (std::uint32_t h = 0; h < 65536; ++h) t[h] = cl_half_to_float(static_cast<cl_half>(h));
    return t;
  }();
  return table;
}

}  // namespace

half_bits float_to_half(float f) noexcept { return cl_half_from_float(f, CL_HALF_RTE); }

float half_to_float(half_bits h) noexcept { return half_table()[h]; }

void floats_to_halves(const float* in, half_bits* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = cl_half_from_float(in[i], CL_HALF_RTE);
}

void halves_to_floats(const half_bits* in, float* out, std::size_t n) noexcept {
  const auto& t = half_table();
  for (std::size_t i = 0; i < n; ++i) out[i] = t[in[i]];
}

}  // namespace kvarn_cl
