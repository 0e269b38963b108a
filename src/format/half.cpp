#include "kvarn_cl/half.hpp"

#include <array>

#include <CL/cl_half.h>

// The F16C fast path exists only on x86-64 with GCC or clang; every other target (Arm, MSVC) uses
// the portable conversion.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
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

// CPUID leaf 1 (F16C, AVX, OSXSAVE) plus XGETBV (the OS saves the YMM registers) rather than
// __builtin_cpu_supports("f16c"), which clang 14/15 reject.
bool detect_f16c() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool f16c = (ecx & bit_F16C) != 0, avx = (ecx & bit_AVX) != 0;
  const bool osxsave = (ecx & bit_OSXSAVE) != 0;
  if (!f16c || !avx || !osxsave) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  return (xcr0_lo & 0x6u) == 0x6u;  // XMM and YMM state enabled
}

bool cpu_has_f16c() noexcept {
  static const bool has = detect_f16c();
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

void floats_to_halves_saturated(const float* in, half_bits* out, std::size_t n) noexcept {
  constexpr float kMax = 65504.0f;
  constexpr std::size_t kChunk = 256;
  float clamped[kChunk];
  for (std::size_t i = 0; i < n; i += kChunk) {
    const std::size_t m = n - i < kChunk ? n - i : kChunk;
    for (std::size_t j = 0; j < m; ++j) {
      const float x = in[i + j];
      clamped[j] = x > kMax ? kMax : (x < -kMax ? -kMax : x);  // NaN fails both tests: kept
    }
    floats_to_halves(clamped, out + i, m);
  }
}

void halves_to_floats(const half_bits* in, float* out, std::size_t n) noexcept {
  const auto& t = half_table();
  for (std::size_t i = 0; i < n; ++i) out[i] = t[in[i]];
}

}  // namespace kvarn_cl
