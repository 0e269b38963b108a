// SIMD building blocks of the CPU decode attention (src/cpu/simd.hpp), with Google Highway.
//
// code_matmul is both products of SPEC §4: scores = (q·s_col_K) × K codes and values =
// (p·s_row_V) × V codes. Codes are read as 32-bit words: lane i of a word vector holds codes
// (word0 + i)·cpw + j at shift j·bits (cpw = 32 / bits codes per word), so one load and a shift
// and mask give a vector of codes of one "phase" j; no byte shuffles are needed, and the phase is
// undone when the sums are stored. Every code vector serves up to four rows of `a` (the query heads
// of a KV head under GQA) from registers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/simd_decode_attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/simd.hpp"

HWY_BEFORE_NAMESPACE();
namespace kvarn_cl::cpu::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// RB rows of `a` (RB <= 4) times the codes, for the words [word0, word0 + Lanes) of each row and
// the phases [j0, j0 + 2).
template <class DF, int RB>
HWY_INLINE void CodeBlock(DF df, const float* a, std::size_t a_stride, const std::uint8_t* codes,
                          std::size_t row_bytes, int bits, int rows, std::size_t word0, int j0,
                          float* out, std::size_t out_stride) {
  using DU = hn::RebindToUnsigned<DF>;
  using DI = hn::RebindToSigned<DF>;
  const DU du;
  const DI di;
  const std::size_t N = hn::Lanes(df);
  const int cpw = 32 / bits;
  // Phase j is isolated by masking its bits in place (the code times 2^(j·bits), exact in int32
  // and in float) and the power of two is taken out of the sums at the end: scaling by a power of
  // two commutes with every rounding, so this is exactly the sum of a · code, one shift cheaper
  // per code vector. The top phase would not fit a positive int32 and is shifted down instead.
  const int sh0 = j0 * bits, sh1 = (j0 + 1) * bits;
  const bool top1 = j0 + 1 == cpw - 1;
  const auto mask0 = hn::Set(du, ((1u << bits) - 1u) << sh0);
  const auto mask1 = hn::Set(du, ((1u << bits) - 1u) << (top1 ? 0 : sh1));
  hn::Vec<DF> acc0[RB], acc1[RB];
  for (int r = 0; r < RB; ++r) acc0[r] = acc1[r] = hn::Zero(df);
  const std::uint8_t* p = codes + 4 * word0;
  for (int i = 0; i < rows; ++i, p += row_bytes) {
    const auto w = hn::LoadU(du, reinterpret_cast<const std::uint32_t*>(p));
    const auto c0 = hn::ConvertTo(df, hn::BitCast(di, hn::And(w, mask0)));
    const auto c1 =
        hn::ConvertTo(df, hn::BitCast(di, top1 ? hn::ShiftRightSame(w, sh1) : hn::And(w, mask1)));
    for (int r = 0; r < RB; ++r) {
      const auto s = hn::Set(df, a[std::size_t(r) * a_stride + std::size_t(i)]);
      acc0[r] = hn::MulAdd(s, c0, acc0[r]);
      acc1[r] = hn::MulAdd(s, c1, acc1[r]);
    }
  }
  const auto unscale0 = hn::Set(df, std::ldexp(1.0f, -sh0));
  const auto unscale1 = hn::Set(df, top1 ? 1.0f : std::ldexp(1.0f, -sh1));
  for (int r = 0; r < RB; ++r) {
    acc0[r] = hn::Mul(acc0[r], unscale0);
    acc1[r] = hn::Mul(acc1[r], unscale1);
  }
  HWY_ALIGN float tmp[2 * hn::MaxLanes(df)];
  for (int r = 0; r < RB; ++r) {
    hn::Store(acc0[r], df, tmp);
    hn::Store(acc1[r], df, tmp + N);
    float* o = out + std::size_t(r) * out_stride;
    for (std::size_t l = 0; l < N; ++l) {
      o[(word0 + l) * cpw + j0] = tmp[l];
      o[(word0 + l) * cpw + j0 + 1] = tmp[N + l];
    }
  }
}

template <class DF>
void CodeMatmulWith(DF df, const float* a, std::size_t a_stride, int R, const std::uint8_t* codes,
                    std::size_t row_bytes, int bits, int rows, int cols, float* out,
                    std::size_t out_stride) {
  const std::size_t words = std::size_t(cols) * bits / 32;
  const std::size_t N = hn::Lanes(df);
  const int cpw = 32 / bits;
  for (int r0 = 0; r0 < R; r0 += 4) {
    const int rb = std::min(4, R - r0);
    const float* ar = a + std::size_t(r0) * a_stride;
    float* orow = out + std::size_t(r0) * out_stride;
    for (std::size_t w0 = 0; w0 < words; w0 += N)
      for (int j = 0; j < cpw; j += 2) {
        switch (rb) {
          case 4:
            CodeBlock<DF, 4>(df, ar, a_stride, codes, row_bytes, bits, rows, w0, j, orow,
                             out_stride);
            break;
          case 3:
            CodeBlock<DF, 3>(df, ar, a_stride, codes, row_bytes, bits, rows, w0, j, orow,
                             out_stride);
            break;
          case 2:
            CodeBlock<DF, 2>(df, ar, a_stride, codes, row_bytes, bits, rows, w0, j, orow,
                             out_stride);
            break;
          default:
            CodeBlock<DF, 1>(df, ar, a_stride, codes, row_bytes, bits, rows, w0, j, orow,
                             out_stride);
            break;
        }
      }
  }
}

void CodeMatmul(const float* a, std::size_t a_stride, int R, const std::uint8_t* codes,
                std::size_t row_bytes, int bits, int rows, int cols, float* out,
                std::size_t out_stride) {
  // The widest vector whose lane count divides the words of a row (4 words at the least).
  const std::size_t words = std::size_t(cols) * bits / 32;
  const hn::ScalableTag<float> full;
  if (words % hn::Lanes(full) == 0)
    return CodeMatmulWith(full, a, a_stride, R, codes, row_bytes, bits, rows, cols, out,
                          out_stride);
  const hn::CappedTag<float, 8> eight;
  if (words % hn::Lanes(eight) == 0)
    return CodeMatmulWith(eight, a, a_stride, R, codes, row_bytes, bits, rows, cols, out,
                          out_stride);
  const hn::CappedTag<float, 4> four;
  CodeMatmulWith(four, a, a_stride, R, codes, row_bytes, bits, rows, cols, out, out_stride);
}

// fp16 rows: score[r][t] = q[r] · k[t].
template <int RB>
HWY_INLINE void ScoresBlock(const float* q, int D, const half_bits* k, int n, float* score,
                            std::size_t stride) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const int N = int(hn::Lanes(df));
  for (int t = 0; t < n; ++t) {
    hn::Vec<decltype(df)> acc[RB];
    for (int r = 0; r < RB; ++r) acc[r] = hn::Zero(df);
    const half_bits* kt = k + std::size_t(t) * D;
    for (int d = 0; d < D; d += N) {
      const auto kv =
          hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(kt + d)));
      for (int r = 0; r < RB; ++r)
        acc[r] = hn::MulAdd(hn::LoadU(df, q + std::size_t(r) * D + d), kv, acc[r]);
    }
    for (int r = 0; r < RB; ++r)
      score[std::size_t(r) * stride + std::size_t(t)] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
  }
}

void Fp16Scores(const float* q, int R, int D, const half_bits* k, int n, float* score,
                std::size_t stride) {
  for (int r0 = 0; r0 < R; r0 += 4) {
    const float* qr = q + std::size_t(r0) * D;
    float* sr = score + std::size_t(r0) * stride;
    switch (std::min(4, R - r0)) {
      case 4:
        ScoresBlock<4>(qr, D, k, n, sr, stride);
        break;
      case 3:
        ScoresBlock<3>(qr, D, k, n, sr, stride);
        break;
      case 2:
        ScoresBlock<2>(qr, D, k, n, sr, stride);
        break;
      default:
        ScoresBlock<1>(qr, D, k, n, sr, stride);
        break;
    }
  }
}

// fp16 rows: acc[r] += sum_t p[r][t] · v[t], one vector of channels at a time in registers.
void Fp16Accumulate(const float* p, std::size_t stride, int R, int D, const half_bits* v, int n,
                    float* acc) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const int N = int(hn::Lanes(df));
  for (int r0 = 0; r0 < R; r0 += 4) {
    const int rb = std::min(4, R - r0);
    for (int d = 0; d < D; d += N) {
      hn::Vec<decltype(df)> a[4];
      for (int r = 0; r < rb; ++r) a[r] = hn::LoadU(df, acc + std::size_t(r0 + r) * D + d);
      for (int t = 0; t < n; ++t) {
        const auto vv = hn::PromoteTo(
            df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(v + std::size_t(t) * D + d)));
        for (int r = 0; r < rb; ++r)
          a[r] =
              hn::MulAdd(hn::Set(df, p[std::size_t(r0 + r) * stride + std::size_t(t)]), vv, a[r]);
      }
      for (int r = 0; r < rb; ++r) hn::StoreU(a[r], df, acc + std::size_t(r0 + r) * D + d);
    }
  }
}

// The per-tile vector steps around the two code products (see simd.hpp): vectorized over channels
// or tokens, the sums as vector partial sums.
// The zero-point sums are dot products whose terms may cancel, and an error in them shifts every
// score of the tile: they are summed in double like the reference (four partial sums, so the
// adds do not wait on each other), over the fp32 products the reference forms.
HWY_INLINE float SumInDouble(const float* x, int n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i];
    s1 += x[i + 1];
    s2 += x[i + 2];
    s3 += x[i + 3];
  }
  for (; i < n; ++i) s0 += x[i];
  return float((s0 + s1) + (s2 + s3));
}

void PrescaleQuery(const float* q, int R, int D, const float* s_col, const float* zp, float* qs,
                   float* z) {
  const hn::ScalableTag<float> df;
  const int N = int(hn::Lanes(df));
  HWY_ALIGN float prod[256];
  for (int r = 0; r < R; ++r) {
    const float* qr = q + std::size_t(r) * D;
    float* out = qs + std::size_t(r) * D;
    for (int d0 = 0; d0 < D; d0 += 256) {
      const int n = std::min(256, D - d0);
      for (int d = 0; d < n; d += N) {
        const auto qv = hn::LoadU(df, qr + d0 + d);
        hn::StoreU(hn::Mul(qv, hn::LoadU(df, s_col + d0 + d)), df, out + d0 + d);
        hn::Store(hn::Mul(qv, hn::LoadU(df, zp + d0 + d)), df, prod + d);
      }
      z[r] = (d0 == 0 ? 0.0f : z[r]) + SumInDouble(prod, n);
    }
  }
}

void FoldScores(float* score, std::size_t stride, int R, int G, const float* s_row, const float* z,
                float scale) {
  const hn::ScalableTag<float> df;
  const int N = int(hn::Lanes(df));
  const auto vs = hn::Set(df, scale);
  for (int r = 0; r < R; ++r) {
    float* sr = score + std::size_t(r) * stride;
    const auto vz = hn::Set(df, z[r]);
    for (int t = 0; t < G; t += N)
      hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, s_row + t), hn::Add(hn::LoadU(df, sr + t), vz)), vs),
                 df, sr + t);
  }
}

void ValueWeights(float* score, std::size_t stride, int R, int G, const float* zp,
                  const float* s_row, float* zs) {
  const hn::ScalableTag<float> df;
  const int N = int(hn::Lanes(df));
  HWY_ALIGN float prod[256];
  for (int r = 0; r < R; ++r) {
    float* sr = score + std::size_t(r) * stride;
    for (int t0 = 0; t0 < G; t0 += 256) {
      const int n = std::min(256, G - t0);
      for (int t = 0; t < n; t += N) {
        const auto p = hn::LoadU(df, sr + t0 + t);
        hn::Store(hn::Mul(p, hn::LoadU(df, zp + t0 + t)), df, prod + t);
        hn::StoreU(hn::Mul(p, hn::LoadU(df, s_row + t0 + t)), df, sr + t0 + t);
      }
      zs[r] = (t0 == 0 ? 0.0f : zs[r]) + SumInDouble(prod, n);
    }
  }
}

void AccumulateValues(float* acc, const float* tmp, int R, int D, const float* s_col,
                      const float* zs) {
  const hn::ScalableTag<float> df;
  const int N = int(hn::Lanes(df));
  for (int r = 0; r < R; ++r) {
    float* ar = acc + std::size_t(r) * D;
    const float* tr = tmp + std::size_t(r) * D;
    const auto vz = hn::Set(df, zs[r]);
    for (int d = 0; d < D; d += N)
      hn::StoreU(hn::MulAdd(hn::LoadU(df, s_col + d), hn::Add(hn::LoadU(df, tr + d), vz),
                            hn::LoadU(df, ar + d)),
                 df, ar + d);
  }
}

// Online softmax update of R heads over n new scores (see simd.hpp).
void SoftmaxUpdate(float* score, std::size_t stride, int R, int n, int D, float* m, float* l,
                   float* acc) {
  const hn::ScalableTag<float> df;
  const int N = int(hn::Lanes(df));
  const int body = n - n % N;
  for (int r = 0; r < R; ++r) {
    float* sr = score + std::size_t(r) * stride;
    auto vmx = hn::Set(df, m[r]);
    for (int t = 0; t < body; t += N) vmx = hn::Max(vmx, hn::LoadU(df, sr + t));
    float mx = hn::GetLane(hn::MaxOfLanes(df, vmx));
    for (int t = body; t < n; ++t) mx = std::max(mx, sr[t]);
    const float alpha =
        m[r] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(m[r] - mx);
    if (alpha != 1.0f) {
      l[r] *= alpha;
      float* ar = acc + std::size_t(r) * D;
      const auto va = hn::Set(df, alpha);
      int d = 0;
      for (; d + N <= D; d += N) hn::StoreU(hn::Mul(hn::LoadU(df, ar + d), va), df, ar + d);
      for (; d < D; ++d) ar[d] *= alpha;
    }
    const auto vm = hn::Set(df, mx);
    auto vsum = hn::Zero(df);
    for (int t = 0; t < body; t += N) {
      const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, sr + t), vm));
      hn::StoreU(e, df, sr + t);
      vsum = hn::Add(vsum, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
    for (int t = body; t < n; ++t) {
      sr[t] = std::exp(sr[t] - mx);
      sum += sr[t];
    }
    l[r] += sum;
    m[r] = mx;
  }
}

// fp16 -> fp32 of n values; false if one of them is NaN/Inf (the caller reports which).
bool LoadFiniteHalves(const std::uint8_t* src, int n, float* out) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<hwy::float16_t, decltype(df)> dh;
  const hn::Rebind<std::uint16_t, decltype(df)> du16;
  const int N = int(hn::Lanes(df));
  // Checked on the fp16 bits (all exponent bits set = Inf/NaN): the promotion that targets
  // without F16C emulate is exact for finite values only.
  const auto exp_mask = hn::Set(du16, std::uint16_t(0x7C00));
  auto bad = hn::Zero(du16);
  int i = 0;
  for (; i + N <= n; i += N) {
    const auto raw =
        hn::LoadU(du16, reinterpret_cast<const std::uint16_t*>(src + 2 * std::size_t(i)));
    bad = hn::Or(bad, hn::VecFromMask(du16, hn::Eq(hn::And(raw, exp_mask), exp_mask)));
    hn::StoreU(hn::PromoteTo(df, hn::BitCast(dh, raw)), df, out + i);
  }
  bool ok = hn::AllTrue(du16, hn::Eq(bad, hn::Zero(du16)));
  for (; i < n; ++i) {
    half_bits h;
    std::memcpy(&h, src + 2 * std::size_t(i), sizeof h);
    ok = ok && (h & 0x7C00u) != 0x7C00u;
    out[i] = half_to_float(h);
  }
  return ok;
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn_cl::cpu::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn_cl::cpu::simd {

HWY_EXPORT(CodeMatmul);
HWY_EXPORT(Fp16Scores);
HWY_EXPORT(Fp16Accumulate);
HWY_EXPORT(SoftmaxUpdate);
HWY_EXPORT(PrescaleQuery);
HWY_EXPORT(FoldScores);
HWY_EXPORT(ValueWeights);
HWY_EXPORT(AccumulateValues);

void prescale_query(const float* q, int R, int D, const float* s_col, const float* zp, float* qs,
                    float* z) {
  HWY_DYNAMIC_DISPATCH(PrescaleQuery)(q, R, D, s_col, zp, qs, z);
}
void fold_scores(float* score, std::size_t stride, int R, int G, const float* s_row, const float* z,
                 float scale) {
  HWY_DYNAMIC_DISPATCH(FoldScores)(score, stride, R, G, s_row, z, scale);
}
void value_weights(float* score, std::size_t stride, int R, int G, const float* zp,
                   const float* s_row, float* zs) {
  HWY_DYNAMIC_DISPATCH(ValueWeights)(score, stride, R, G, zp, s_row, zs);
}
void accumulate_values(float* acc, const float* tmp, int R, int D, const float* s_col,
                       const float* zs) {
  HWY_DYNAMIC_DISPATCH(AccumulateValues)(acc, tmp, R, D, s_col, zs);
}
HWY_EXPORT(LoadFiniteHalves);

void softmax_update(float* score, std::size_t stride, int R, int n, int D, float* m, float* l,
                    float* acc) {
  HWY_DYNAMIC_DISPATCH(SoftmaxUpdate)(score, stride, R, n, D, m, l, acc);
}

bool load_finite_halves(const std::uint8_t* src, int n, float* out) {
  return HWY_DYNAMIC_DISPATCH(LoadFiniteHalves)(src, n, out);
}

void code_matmul(const float* a, std::size_t a_stride, int R, const std::uint8_t* codes,
                 std::size_t row_bytes, int bits, int rows, int cols, float* out,
                 std::size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(CodeMatmul)
  (a, a_stride, R, codes, row_bytes, bits, rows, cols, out, out_stride);
}

void fp16_scores(const float* q, int R, int D, const half_bits* k, int n, float* score,
                 std::size_t stride) {
  HWY_DYNAMIC_DISPATCH(Fp16Scores)(q, R, D, k, n, score, stride);
}

void fp16_accumulate(const float* p, std::size_t stride, int R, int D, const half_bits* v, int n,
                     float* acc) {
  HWY_DYNAMIC_DISPATCH(Fp16Accumulate)(p, stride, R, D, v, n, acc);
}

}  // namespace kvarn_cl::cpu::simd
#endif
