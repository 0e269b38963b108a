#include "kvarn_cl/half.hpp"

#include <array>

#include <CL/cl_half.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KVARN_CL_HAVE_F16C_PATH 1
#endif

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

#ifdef KVARN_CL_HAVE_F16C_PATH
// The F16C conversion instruction rounds to nearest even like cl_half_from_float(.., CL_HALF_RTE)
// (the test suite checks both agree); it is chosen at run time so the library runs on any x86-64.
__attribute__((target("f16c,avx"))) void floats_to_halves_f16c(const float* in, half_bits* out,
                                                                std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = cl_half_from_float(in[i], CL_HALF_RTE);
}

bool cpu_has_f16c() noexcept {
  static const bool has = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  return has;
}
#endif

}  // namespace

half_bits float_to_half(float f) noexcept { return cl_half_from_float(f, CL_HALF_RTE); }

float half_to_float(half_bits h) noexcept { return half_table()[h]; }

void floats_to_halves(const float* in, half_bits* out, std::size_t n) noexcept {
#ifdef KVARN_CL_HAVE_F16C_PATH
  if (cpu_has_f16c()) return floats_to_halves_f16c(in, out, n);
#endif
  for (std::size_t i = 0; i < n; ++i) out[i] = cl_half_from_float(in[i], CL_HALF_RTE);
}

void floats_to_halves_portable(const float* in, half_bits* out, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) out[i] = cl_half_from_float(in[i], CL_HALF_RTE);
}

void halves_to_floats(const half_bits* in, float* out, std::size_t n) noexcept {
  const auto& t = half_table();
  for (std::size_t i = 0; i < n; ++i) out[i] = t[in[i]];
}

}  // namespace kvarn_cl
