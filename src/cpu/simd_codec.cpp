// SIMD tile codec (src/cpu/simd.hpp): quantize, dequantize and rotation with Google Highway,
// compiled once per instruction set and dispatched at run time.
//
// Quantize follows SPEC §2.3–2.4 step by step like the reference (src/cpu/normalize.cpp,
// tile_codec.cpp), with two deliberate differences inside the Sinkhorn iterations only, where the
// reference is slow by design: standard deviations are summed in fp32 vectors (the reference sums
// in double), and cur = M / exp(lc) / exp(lr) is computed as M · (1/exp(lc)) · (1/exp(lr)) with
// vector log/exp. Both move the scales by a few ulp, which changes a code only where the value sits
// on a rounding tie. B = M / bc / br, min/max, the rounding and the folded vectors are the
// reference's operations in the reference's order, so equal scales give equal records.
//
// Dequantize and rotation are bit-identical to the reference: the same multiplications and
// additions per element in the same order (no fused multiply-add: this file is compiled with
// -ffp-contract=off), and the Walsh–Hadamard stages in the same order.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/simd_codec.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/codec_detail.hpp"
#include "cpu/simd.hpp"
#include "cpu/tile_checks.hpp"
#include "cpu/unpack_floats.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

HWY_BEFORE_NAMESPACE();
namespace kvarn_cl::cpu::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
using DH = hn::Rebind<hwy::float16_t, DF>;

constexpr float kStdFloor = 1e-3f;
constexpr float kStdCeil = 1e3f;
constexpr float kLogMin = -0.3f;
constexpr float kLogMax = 10.0f;
constexpr float kImbalanceFloor = 1e-8f;

// Per-thread scratch, grown on demand, so that a tile costs no allocation.
struct Scratch {
  std::vector<float> m, cur, row, lc, lr, ec, er, iec, ier, rs, cs, colsum, bc, br;
  std::vector<float> k_step, k_zero, v_step, v_zero;
  std::vector<float> scales[6];
  std::vector<std::int32_t> codes;
  std::vector<half_bits> halves;
};

Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

template <typename T>
T* sized(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// --- Walsh–Hadamard transform of one row (the reference's stage order: stride 1, 2, 4, ...) ----
HWY_INLINE void FwhtRow(float* x, int n, float scale) {
  const DF df;
  const DI di;
  const int N = int(hn::Lanes(df));
  if (n < N || n % N != 0) {
    fwht_inplace(x, n);
    return;
  }
  const auto iota = hn::Iota(di, 0);
  // Strides inside a vector: lane i pairs with lane i ^ h. The lower lane of a pair computes
  // a + b (a = its own value), the upper one a - b (a = the partner's value).
  for (int h = 1; h < N; h <<= 1) {
    const auto idx = hn::IndicesFromVec(df, hn::Xor(iota, hn::Set(di, h)));
    const auto upper = hn::RebindMask(df, hn::Ne(hn::And(iota, hn::Set(di, h)), hn::Zero(di)));
    for (int i = 0; i < n; i += N) {
      const auto v = hn::LoadU(df, x + i);
      const auto p = hn::TableLookupLanes(v, idx);
      hn::StoreU(hn::IfThenElse(upper, hn::Sub(p, v), hn::Add(v, p)), df, x + i);
    }
  }
  for (int h = N; h < n; h <<= 1) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; j += N) {
        const auto a = hn::LoadU(df, x + j);
        const auto b = hn::LoadU(df, x + j + h);
        hn::StoreU(hn::Add(a, b), df, x + j);
        hn::StoreU(hn::Sub(a, b), df, x + j + h);
      }
    }
  }
  const auto s = hn::Set(df, scale);
  for (int i = 0; i < n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), s), df, x + i);
}

void FwhtRows(float* rows, std::size_t count, int n) {
  const float scale = detail::rotation_scale(n);
  for (std::size_t r = 0; r < count; ++r) FwhtRow(rows + r * std::size_t(n), n, scale);
}

void RotateRowsF32(const float* in, half_bits* out, std::size_t rows, int D) {
  validate_head_dim(D);
  float* row = sized(scratch().row, std::size_t(D));
  const float scale = detail::rotation_scale(D);
  for (std::size_t r = 0; r < rows; ++r) {
    std::memcpy(row, in + r * D, sizeof(float) * std::size_t(D));
    FwhtRow(row, D, scale);
    floats_to_halves(row, out + r * D, std::size_t(D));
  }
}

HWY_INLINE void HalvesToFloats(const half_bits* in, float* out, int n) {
  const DF df;
  const DH dh;
  const int N = int(hn::Lanes(df));
  int i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(in + i))),
               df, out + i);
  for (; i < n; ++i) out[i] = half_to_float(in[i]);
}

// n decoded floats to fp16, rounded to nearest even and saturated to ±65504 (a finite record
// always decodes to finite fp16: docs/API.md, robustness; the same as floats_to_halves_saturated).
// Targets with F16C convert in registers (the instruction's rounding is RNE); the others go
// through floats_to_halves_saturated, because Highway's emulated conversion does not round the
// same way.
HWY_INLINE void FloatsToHalves(const float* in, half_bits* out, int n) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const DF df;
  const DH dh;
  const int N = int(hn::Lanes(df));
  const auto hi = hn::Set(df, 65504.0f), lo = hn::Set(df, -65504.0f);
  int i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::DemoteTo(dh, hn::Min(hn::Max(hn::LoadU(df, in + i), lo), hi)), dh,
               reinterpret_cast<hwy::float16_t*>(out + i));
  if (i < n) floats_to_halves_saturated(in + i, out + i, std::size_t(n - i));
#else
  floats_to_halves_saturated(in, out, std::size_t(n));
#endif
}

void RotateRowsF16(const half_bits* in, half_bits* out, std::size_t rows, int D) {
  validate_head_dim(D);
  float* row = sized(scratch().row, std::size_t(D));
  const float scale = detail::rotation_scale(D);
  for (std::size_t r = 0; r < rows; ++r) {
    HalvesToFloats(in + r * D, row, D);
    FwhtRow(row, D, scale);
    floats_to_halves(row, out + r * D, std::size_t(D));
  }
}

// --- variance normalization (SPEC §2.3) -------------------------------------------------------

// Unbiased, mean-subtracted standard deviation of n floats (n a multiple of the lane count).
HWY_INLINE float VecStd(const float* x, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  auto s0 = hn::Zero(df), s1 = hn::Zero(df);
  int i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::Add(s0, hn::LoadU(df, x + i));
    s1 = hn::Add(s1, hn::LoadU(df, x + i + N));
  }
  for (; i < n; i += N) s0 = hn::Add(s0, hn::LoadU(df, x + i));
  const float mean = hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1))) / float(n);
  const auto vm = hn::Set(df, mean);
  auto q0 = hn::Zero(df), q1 = hn::Zero(df);
  for (i = 0; i + 2 * N <= n; i += 2 * N) {
    const auto d0 = hn::Sub(hn::LoadU(df, x + i), vm);
    const auto d1 = hn::Sub(hn::LoadU(df, x + i + N), vm);
    q0 = hn::MulAdd(d0, d0, q0);
    q1 = hn::MulAdd(d1, d1, q1);
  }
  for (; i < n; i += N) {
    const auto d0 = hn::Sub(hn::LoadU(df, x + i), vm);
    q0 = hn::MulAdd(d0, d0, q0);
  }
  return std::sqrt(hn::GetLane(hn::SumOfLanes(df, hn::Add(q0, q1))) / float(n - 1));
}

// Row standard deviations of a rows×cols matrix, four rows at a time: the per-row sums are short
// dependency chains ending in a horizontal reduction, so interleaving rows keeps the vector units
// busy instead of waiting on each chain.
//
// The matrix is cur = M · inv_col[col] · inv_row[row] (or M itself when inv_col is null), computed
// on the fly from M: recomputing two products is cheaper than storing and reloading cur.
template <bool kScaled>
HWY_INLINE hn::Vec<DF> Cur(const float* x, const float* inv_col, hn::Vec<DF> inv_row, int c) {
  const DF df;
  if (!kScaled) return hn::LoadU(df, x + c);
  return hn::Mul(hn::Mul(hn::LoadU(df, x + c), hn::LoadU(df, inv_col + c)), inv_row);
}

template <bool kScaled>
void RowStds(const float* m, const float* inv_col, const float* inv_row, int rows, int cols,
             float* rs) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* x0 = m + std::size_t(r) * cols;
    const float* x1 = x0 + cols;
    const float* x2 = x1 + cols;
    const float* x3 = x2 + cols;
    const auto i0 = hn::Set(df, kScaled ? inv_row[r] : 1.0f);
    const auto i1 = hn::Set(df, kScaled ? inv_row[r + 1] : 1.0f);
    const auto i2 = hn::Set(df, kScaled ? inv_row[r + 2] : 1.0f);
    const auto i3 = hn::Set(df, kScaled ? inv_row[r + 3] : 1.0f);
    auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
    for (int c = 0; c < cols; c += N) {
      s0 = hn::Add(s0, Cur<kScaled>(x0, inv_col, i0, c));
      s1 = hn::Add(s1, Cur<kScaled>(x1, inv_col, i1, c));
      s2 = hn::Add(s2, Cur<kScaled>(x2, inv_col, i2, c));
      s3 = hn::Add(s3, Cur<kScaled>(x3, inv_col, i3, c));
    }
    const float inv_n = 1.0f / float(cols);
    const auto m0 = hn::Set(df, hn::GetLane(hn::SumOfLanes(df, s0)) * inv_n);
    const auto m1 = hn::Set(df, hn::GetLane(hn::SumOfLanes(df, s1)) * inv_n);
    const auto m2 = hn::Set(df, hn::GetLane(hn::SumOfLanes(df, s2)) * inv_n);
    const auto m3 = hn::Set(df, hn::GetLane(hn::SumOfLanes(df, s3)) * inv_n);
    auto q0 = hn::Zero(df), q1 = hn::Zero(df), q2 = hn::Zero(df), q3 = hn::Zero(df);
    for (int c = 0; c < cols; c += N) {
      const auto d0 = hn::Sub(Cur<kScaled>(x0, inv_col, i0, c), m0);
      const auto d1 = hn::Sub(Cur<kScaled>(x1, inv_col, i1, c), m1);
      const auto d2 = hn::Sub(Cur<kScaled>(x2, inv_col, i2, c), m2);
      const auto d3 = hn::Sub(Cur<kScaled>(x3, inv_col, i3, c), m3);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
      q2 = hn::MulAdd(d2, d2, q2);
      q3 = hn::MulAdd(d3, d3, q3);
    }
    const float inv_n1 = 1.0f / float(cols - 1);
    rs[r] = std::sqrt(hn::GetLane(hn::SumOfLanes(df, q0)) * inv_n1);
    rs[r + 1] = std::sqrt(hn::GetLane(hn::SumOfLanes(df, q1)) * inv_n1);
    rs[r + 2] = std::sqrt(hn::GetLane(hn::SumOfLanes(df, q2)) * inv_n1);
    rs[r + 3] = std::sqrt(hn::GetLane(hn::SumOfLanes(df, q3)) * inv_n1);
  }
  std::vector<float>& row = scratch().row;
  for (; r < rows; ++r) {
    float* y = sized(row, std::size_t(cols));
    const auto ir = hn::Set(df, kScaled ? inv_row[r] : 1.0f);
    for (int c = 0; c < cols; c += N)
      hn::StoreU(Cur<kScaled>(m + std::size_t(r) * cols, inv_col, ir, c), df, y + c);
    rs[r] = VecStd(y, cols);
  }
}

// Column standard deviations of a rows×cols matrix, in blocks of four vectors of columns kept in
// registers over all rows.
template <bool kScaled>
void ColStds(const float* m, const float* inv_col, const float* inv_row, int rows, int cols,
             float* cs) {
  const DF df;
  const int N = int(hn::Lanes(df));
  const auto inv_rows = hn::Set(df, 1.0f / float(rows));
  const auto inv = hn::Set(df, 1.0f / float(rows - 1));
  int c = 0;
  for (; c + 4 * N <= cols; c += 4 * N) {
    auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
    const float* x = m;
    for (int r = 0; r < rows; ++r, x += cols) {
      const auto ir = hn::Set(df, kScaled ? inv_row[r] : 1.0f);
      s0 = hn::Add(s0, Cur<kScaled>(x, inv_col, ir, c));
      s1 = hn::Add(s1, Cur<kScaled>(x, inv_col, ir, c + N));
      s2 = hn::Add(s2, Cur<kScaled>(x, inv_col, ir, c + 2 * N));
      s3 = hn::Add(s3, Cur<kScaled>(x, inv_col, ir, c + 3 * N));
    }
    const auto m0 = hn::Mul(s0, inv_rows), m1 = hn::Mul(s1, inv_rows);
    const auto m2 = hn::Mul(s2, inv_rows), m3 = hn::Mul(s3, inv_rows);
    auto q0 = hn::Zero(df), q1 = hn::Zero(df), q2 = hn::Zero(df), q3 = hn::Zero(df);
    x = m;
    for (int r = 0; r < rows; ++r, x += cols) {
      const auto ir = hn::Set(df, kScaled ? inv_row[r] : 1.0f);
      const auto d0 = hn::Sub(Cur<kScaled>(x, inv_col, ir, c), m0);
      const auto d1 = hn::Sub(Cur<kScaled>(x, inv_col, ir, c + N), m1);
      const auto d2 = hn::Sub(Cur<kScaled>(x, inv_col, ir, c + 2 * N), m2);
      const auto d3 = hn::Sub(Cur<kScaled>(x, inv_col, ir, c + 3 * N), m3);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
      q2 = hn::MulAdd(d2, d2, q2);
      q3 = hn::MulAdd(d3, d3, q3);
    }
    hn::StoreU(hn::Sqrt(hn::Mul(q0, inv)), df, cs + c);
    hn::StoreU(hn::Sqrt(hn::Mul(q1, inv)), df, cs + c + N);
    hn::StoreU(hn::Sqrt(hn::Mul(q2, inv)), df, cs + c + 2 * N);
    hn::StoreU(hn::Sqrt(hn::Mul(q3, inv)), df, cs + c + 3 * N);
  }
  for (; c < cols; c += N) {
    auto s0 = hn::Zero(df);
    for (int r = 0; r < rows; ++r)
      s0 = hn::Add(s0, Cur<kScaled>(m + std::size_t(r) * cols, inv_col,
                                    hn::Set(df, kScaled ? inv_row[r] : 1.0f), c));
    const auto m0 = hn::Mul(s0, inv_rows);
    auto q0 = hn::Zero(df);
    for (int r = 0; r < rows; ++r) {
      const auto d0 = hn::Sub(Cur<kScaled>(m + std::size_t(r) * cols, inv_col,
                                           hn::Set(df, kScaled ? inv_row[r] : 1.0f), c),
                              m0);
      q0 = hn::MulAdd(d0, d0, q0);
    }
    hn::StoreU(hn::Sqrt(hn::Mul(q0, inv)), df, cs + c);
  }
}

float RatioTerm(const float* s, int n) {
  float mn = s[0], mx = s[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, s[i]);
    mx = std::max(mx, s[i]);
  }
  return mx / std::max(mn, kImbalanceFloor);
}

// log_scale = clamp(log_scale + log(clamp(std))), scale = exp(log_scale), inv = 1 / scale.
void UpdateLogScale(float* log_scale, const float* stds, float* scale, float* inv, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  const auto lo = hn::Set(df, kStdFloor), hi = hn::Set(df, kStdCeil);
  const auto lmin = hn::Set(df, kLogMin), lmax = hn::Set(df, kLogMax), one = hn::Set(df, 1.0f);
  for (int i = 0; i < n; i += N) {
    const auto s = hn::Min(hn::Max(hn::LoadU(df, stds + i), lo), hi);
    const auto l =
        hn::Min(hn::Max(hn::Add(hn::LoadU(df, log_scale + i), hn::Log(df, s)), lmin), lmax);
    const auto e = hn::Exp(df, l);
    hn::StoreU(l, df, log_scale + i);
    hn::StoreU(e, df, scale + i);
    hn::StoreU(hn::Div(one, e), df, inv + i);
  }
}

// Fills bc (cols) and br (rows) with the best scales of SPEC §2.3.
void Normalize(const float* m, int rows, int cols, int iters, Scratch& s, float* bc, float* br) {
  float* lc = sized(s.lc, std::size_t(cols));
  float* lr = sized(s.lr, std::size_t(rows));
  float* ec = sized(s.ec, std::size_t(cols));
  float* er = sized(s.er, std::size_t(rows));
  float* iec = sized(s.iec, std::size_t(cols));
  float* ier = sized(s.ier, std::size_t(rows));
  float* rs = sized(s.rs, std::size_t(rows));
  float* cs = sized(s.cs, std::size_t(cols));
  std::fill_n(lc, cols, 0.0f);
  std::fill_n(lr, rows, 0.0f);
  std::fill_n(ec, cols, 1.0f);
  std::fill_n(iec, cols, 1.0f);
  std::fill_n(er, rows, 1.0f);
  std::fill_n(ier, rows, 1.0f);
  std::fill_n(bc, cols, 1.0f);
  std::fill_n(br, rows, 1.0f);

  RowStds<false>(m, nullptr, nullptr, rows, cols, rs);
  ColStds<false>(m, nullptr, nullptr, rows, cols, cs);
  float best = RatioTerm(cs, cols) + RatioTerm(rs, rows);
  for (int it = 1; it <= iters; ++it) {
    UpdateLogScale(lc, cs, ec, iec, cols);
    RowStds<true>(m, iec, ier, rows, cols, rs);
    UpdateLogScale(lr, rs, er, ier, rows);
    RowStds<true>(m, iec, ier, rows, cols, rs);
    ColStds<true>(m, iec, ier, rows, cols, cs);
    const float imb = RatioTerm(cs, cols) + RatioTerm(rs, rows);
    if (imb <= best) {
      best = imb;
      std::copy_n(ec, cols, bc);
      std::copy_n(er, rows, br);
    }
  }
}

// --- rounding and packing (SPEC §2.4–2.5) -----------------------------------------------------

static_assert(kSupportedCodeBits.size() == 2 && kSupportedCodeBits[0] == 2 &&
                  kSupportedCodeBits[1] == 4,
              "PackRow packs 2- and 4-bit codes: add a case for a new width");

void PackRow(const std::int32_t* codes, int n, int bits, std::uint8_t* out) {
  switch (bits) {
    case 4:
      for (int i = 0; i < n / 2; ++i) out[i] = std::uint8_t(codes[2 * i] | (codes[2 * i + 1] << 4));
      return;
    case 2:
      for (int i = 0; i < n / 4; ++i)
        out[i] = std::uint8_t(codes[4 * i] | (codes[4 * i + 1] << 2) | (codes[4 * i + 2] << 4) |
                              (codes[4 * i + 3] << 6));
      return;
    default:  // unreachable: CodecParams::validate refuses other widths before any codec call
      break;
  }
}

// B = M / bc / br row by row, each row rounded on its own; step = br·scale, zero = br·lo.
void QuantizeMatrix(const float* m, int rows, int cols, int bits, const float* bc, const float* br,
                    Scratch& s, std::uint8_t* packed, std::size_t row_bytes, float* step,
                    float* zero) {
  const DF df;
  const DI di;
  const int N = int(hn::Lanes(df));
  float* b = sized(s.row, std::size_t(cols));
  std::int32_t* codes = sized(s.codes, std::size_t(cols));
  const float levels = float((1 << bits) - 1);
  const auto vzero = hn::Zero(df), vlevels = hn::Set(df, levels);
  for (int r = 0; r < rows; ++r) {
    const float* x = m + std::size_t(r) * cols;
    const auto vbr = hn::Set(df, br[r]);
    auto mn = hn::Set(df, HUGE_VALF), mx = hn::Set(df, -HUGE_VALF);
    for (int c = 0; c < cols; c += N) {
      const auto v = hn::Div(hn::Div(hn::LoadU(df, x + c), hn::LoadU(df, bc + c)), vbr);
      hn::StoreU(v, df, b + c);
      mn = hn::Min(mn, v);
      mx = hn::Max(mx, v);
    }
    const float lo = hn::GetLane(hn::MinOfLanes(df, mn));
    const float hi = hn::GetLane(hn::MaxOfLanes(df, mx));
    const float scale = std::max((hi - lo) / levels, 1e-10f);
    const auto vlo = hn::Set(df, lo), vscale = hn::Set(df, scale);
    for (int c = 0; c < cols; c += N) {
      const auto q = hn::Round(hn::Div(hn::Sub(hn::LoadU(df, b + c), vlo), vscale));
      hn::StoreU(hn::ConvertTo(di, hn::Min(hn::Max(q, vzero), vlevels)), di, codes + c);
    }
    PackRow(codes, cols, bits, packed + std::size_t(r) * row_bytes);
    step[r] = br[r] * scale;
    zero[r] = br[r] * lo;
  }
}

// Whether every value is finite and within the codec's bound kMaxRotatedMagnitude (format.hpp);
// fp16 magnitudes order like their bit patterns, NaN and Inf above every finite value.
bool AllFinite(const half_bits* h, std::size_t n) {
  static const unsigned limit = float_to_half(kMaxRotatedMagnitude);
  unsigned bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad |= unsigned((h[i] & 0x7FFFu) > limit);
  return bad == 0;
}

void StoreHalves(const float* v, int n, std::uint8_t* dst) {
  std::vector<half_bits>& h = scratch().halves;
  sized(h, std::size_t(n));
  floats_to_halves(v, h.data(), std::size_t(n));
  std::memcpy(dst, h.data(), sizeof(half_bits) * std::size_t(n));
}

void QuantizeTile(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                  std::uint8_t* record) {
  const RecordLayout l = RecordLayout::make(params);
  const int G = l.group, D = l.head_dim;
  const std::size_t values = std::size_t(G) * D;
  if (!AllFinite(k_rot, values)) check_finite_rows(k_rot, G, D, "keys");
  if (!AllFinite(v_rot, values)) check_finite_rows(v_rot, G, D, "values");
  Scratch& s = scratch();
  float* m = sized(s.m, values);
  float* row = sized(s.colsum, std::size_t(std::max(G, D)));  // free until Normalize
  float* bc = sized(s.bc, std::size_t(std::max(G, D)));
  float* br = sized(s.br, std::size_t(std::max(G, D)));

  // K: rows = channels, columns = tokens.
  for (int t = 0; t < G; ++t) {
    HalvesToFloats(k_rot + std::size_t(t) * D, row, D);
    for (int d = 0; d < D; ++d) m[std::size_t(d) * G + t] = row[d];
  }
  Normalize(m, D, G, params.sinkhorn_iters, s, bc, br);
  float* step = sized(s.k_step, std::size_t(D));
  float* zero = sized(s.k_zero, std::size_t(D));
  QuantizeMatrix(m, D, G, l.k_bits, bc, br, s, record + l.k_codes, l.k_row_bytes, step, zero);
  StoreHalves(step, D, record + l.s_col_k);
  StoreHalves(zero, D, record + l.zp_k);
  StoreHalves(bc, G, record + l.s_row_k);

  // V: rows = tokens, columns = channels.
  for (int t = 0; t < G; ++t) HalvesToFloats(v_rot + std::size_t(t) * D, m + std::size_t(t) * D, D);
  Normalize(m, G, D, params.sinkhorn_iters, s, bc, br);
  step = sized(s.v_step, std::size_t(G));
  zero = sized(s.v_zero, std::size_t(G));
  QuantizeMatrix(m, G, D, l.v_bits, bc, br, s, record + l.v_codes, l.v_row_bytes, step, zero);
  StoreHalves(bc, D, record + l.s_col_v);
  StoreHalves(step, G, record + l.s_row_v);
  StoreHalves(zero, G, record + l.zp_v);
}

// --- dequantize -----------------------------------------------------------------------------

void DequantizeTile(const CodecParams& params, const std::uint8_t* record, half_bits* k_out,
                    half_bits* v_out, Frame frame) {
  const RecordLayout l = RecordLayout::make(params);
  const int G = l.group, D = l.head_dim;
  const DF df;
  const int N = int(hn::Lanes(df));
  Scratch& s = scratch();
  float* s_col_k = sized(s.scales[0], std::size_t(D));
  float* zp_k = sized(s.scales[1], std::size_t(D));
  float* s_row_k = sized(s.scales[2], std::size_t(G));
  float* s_col_v = sized(s.scales[3], std::size_t(D));
  float* s_row_v = sized(s.scales[4], std::size_t(G));
  float* zp_v = sized(s.scales[5], std::size_t(G));
  load_record_halves(record + l.s_col_k, D, s_col_k, "s_col_K");
  load_record_halves(record + l.zp_k, D, zp_k, "zp_K");
  load_record_halves(record + l.s_row_k, G, s_row_k, "s_row_K");
  load_record_halves(record + l.s_col_v, D, s_col_v, "s_col_V");
  load_record_halves(record + l.s_row_v, G, s_row_v, "s_row_V");
  load_record_halves(record + l.zp_v, G, zp_v, "zp_V");
  const bool back = frame == Frame::original;
  const std::size_t values = std::size_t(G) * D;
  float* cf = sized(s.row, std::size_t(std::max(G, D)));

  // K: channel-major (codes run along tokens), then the rotation across channels with tokens in
  // the lanes, then a transposing store.
  // In the rotated frame each channel row goes to fp16 at once; rotating back needs all of them.
  float* kc = sized(s.m, back ? values : std::size_t(G));
  half_bits* kh = sized(s.halves, values);
  for (int d = 0; d < D; ++d) {
    unpack_codes_to_floats(record + l.k_codes + std::size_t(d) * l.k_row_bytes, G, l.k_bits, cf);
    const auto sc = hn::Set(df, s_col_k[d]), zp = hn::Set(df, zp_k[d]);
    float* y = back ? kc + std::size_t(d) * G : kc;
    for (int t = 0; t < G; t += N)
      hn::StoreU(
          hn::Mul(hn::Add(hn::Mul(hn::LoadU(df, cf + t), sc), zp), hn::LoadU(df, s_row_k + t)), df,
          y + t);
    if (!back) FloatsToHalves(kc, kh + std::size_t(d) * G, G);
  }
  if (back) {
    for (int h = 1; h < D; h <<= 1)
      for (int i = 0; i < D; i += 2 * h)
        for (int j = i; j < i + h; ++j) {
          float* a = kc + std::size_t(j) * G;
          float* b = kc + std::size_t(j + h) * G;
          for (int t = 0; t < G; t += N) {
            const auto va = hn::LoadU(df, a + t), vb = hn::LoadU(df, b + t);
            hn::StoreU(hn::Add(va, vb), df, a + t);
            hn::StoreU(hn::Sub(va, vb), df, b + t);
          }
        }
    const auto sc = hn::Set(df, detail::rotation_scale(D));
    for (std::size_t i = 0; i < values; i += std::size_t(N))
      hn::StoreU(hn::Mul(hn::LoadU(df, kc + i), sc), df, kc + i);
    FloatsToHalves(kc, kh, int(values));
  }
  // Transposing store in 16×16 blocks: each output row segment is one contiguous 32-byte run
  // and the strided reads stay within a few cache lines.
  constexpr int kB = 16;
  for (int t0 = 0; t0 < G; t0 += kB)
    for (int d0 = 0; d0 < D; d0 += kB)
      for (int t = t0; t < t0 + kB; ++t) {
        half_bits* o = k_out + std::size_t(t) * D + d0;
        const half_bits* in = kh + std::size_t(d0) * G + t;
        for (int d = 0; d < kB; ++d) o[d] = in[std::size_t(d) * G];
      }

  // V: token-major as stored.
  float* vrow = sized(s.cur, std::size_t(D));
  const float scale = detail::rotation_scale(D);
  for (int t = 0; t < G; ++t) {
    unpack_codes_to_floats(record + l.v_codes + std::size_t(t) * l.v_row_bytes, D, l.v_bits, cf);
    const auto sr = hn::Set(df, s_row_v[t]), zp = hn::Set(df, zp_v[t]);
    for (int d = 0; d < D; d += N)
      hn::StoreU(
          hn::Mul(hn::Add(hn::Mul(hn::LoadU(df, cf + d), sr), zp), hn::LoadU(df, s_col_v + d)), df,
          vrow + d);
    if (back) FwhtRow(vrow, D, scale);
    FloatsToHalves(vrow, v_out + std::size_t(t) * D, D);
  }
}

std::int64_t CurrentTarget() { return HWY_TARGET; }

}  // namespace HWY_NAMESPACE
}  // namespace kvarn_cl::cpu::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn_cl::cpu::simd {

HWY_EXPORT(QuantizeTile);
HWY_EXPORT(DequantizeTile);
HWY_EXPORT(FwhtRows);
HWY_EXPORT(RotateRowsF32);
HWY_EXPORT(RotateRowsF16);
HWY_EXPORT(CurrentTarget);

void quantize_tile(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                   std::uint8_t* record) {
  HWY_DYNAMIC_DISPATCH(QuantizeTile)(params, k_rot, v_rot, record);
}

void dequantize_tile(const CodecParams& params, const std::uint8_t* record, half_bits* k_out,
                     half_bits* v_out, Frame frame) {
  HWY_DYNAMIC_DISPATCH(DequantizeTile)(params, record, k_out, v_out, frame);
}

void fwht_rows(float* rows, std::size_t count, int n) {
  HWY_DYNAMIC_DISPATCH(FwhtRows)(rows, count, n);
}

void rotate_rows(const float* in, half_bits* out, std::size_t rows, int head_dim) {
  HWY_DYNAMIC_DISPATCH(RotateRowsF32)(in, out, rows, head_dim);
}

void rotate_rows(const half_bits* in, half_bits* out, std::size_t rows, int head_dim) {
  HWY_DYNAMIC_DISPATCH(RotateRowsF16)(in, out, rows, head_dim);
}

std::string target_name() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(CurrentTarget)()); }

std::vector<Target> available_targets() {
  std::vector<Target> out;
  for (std::int64_t t : hwy::SupportedAndGeneratedTargets()) out.push_back({t, hwy::TargetName(t)});
  return out;
}

void force_target(std::int64_t bits) { hwy::SetSupportedTargetsForTest(bits); }

}  // namespace kvarn_cl::cpu::simd
#endif
