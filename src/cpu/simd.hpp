// The SIMD paths of the CPU backend (Google Highway, dispatched at run time to the best instruction
// set of the machine). They compute what the scalar reference of src/cpu (quantize_tile,
// dequantize_tile, fwht_inplace, cpu::attend_records with Kernels::reference) defines; the tests
// hold them to it on every instruction set the machine offers (test/cpu/simd_agreement_test.cpp):
// - rotation and dequantization: bit-identical (same operations in the same order per element);
// - quantization: records identical except at rounding ties (SPEC §5), because the Sinkhorn
//   iterations sum in fp32 vectors and multiply by reciprocals where the reference sums in double
//   and divides; the final B = M / bc / br and the rounding are the reference's operations;
// - attention: within 1e-5 relative (sums in a different order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvarn_cl/codec.hpp"

namespace kvarn_cl::cpu::simd {

// --- codec (simd_codec.cpp) -------------------------------------------------------------------
// Same contract as kvarn_cl::quantize_tile (throws NonFiniteInput naming the position).
void quantize_tile(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                   std::uint8_t* record);
// A record to fp16 rows (token-major), as dequantize_tile followed by floats_to_halves; throws
// CorruptRecord for a non-finite scale.
void dequantize_tile(const CodecParams& params, const std::uint8_t* record, half_bits* k_out,
                     half_bits* v_out, Frame frame);
// fwht_inplace on `rows` consecutive rows of n floats.
void fwht_rows(float* rows, std::size_t count, int n);
// rotate_rows for f32 or f16 input.
void rotate_rows(const float* in, half_bits* out, std::size_t rows, int head_dim);
void rotate_rows(const half_bits* in, half_bits* out, std::size_t rows, int head_dim);

// --- attention building blocks (simd_decode_attention.cpp) --------------------------------
// out[r * out_stride + c] = sum over i < rows of a[r * a_stride + i] * code(i, c), for r < R, where
// code(i, c) is code c of packed row i (row_bytes bytes, `bits` bits per code, SPEC §2.5).
// cols * bits must be a multiple of 128 (every geometry of SPEC §2.1).
void code_matmul(const float* a, std::size_t a_stride, int R, const std::uint8_t* codes,
                 std::size_t row_bytes, int bits, int rows, int cols, float* out,
                 std::size_t out_stride);
// score[r * stride + t] = sum_d q[r * D + d] * k[t * D + d] for t < n, r < R (k fp16).
void fp16_scores(const float* q, int R, int D, const half_bits* k, int n, float* score,
                 std::size_t stride);
// acc[r * D + d] += sum_t p[r * stride + t] * v[t * D + d] for t < n, r < R (v fp16).
void fp16_accumulate(const float* p, std::size_t stride, int R, int D, const half_bits* v, int n,
                     float* acc);

// Online softmax of R heads over n new scores (rows of `score` with `stride`): folds them into the
// running max m[r], sum l[r] and accumulator acc[r * D ...] (rescaled by exp(m_old - m_new)), and
// replaces the scores by their weights exp(score - m_new).
void softmax_update(float* score, std::size_t stride, int R, int n, int D, float* m, float* l,
                    float* acc);
// The steps of SPEC §4 around the two code products, for R heads of one tile:
// qs[r][d] = q[r][d]·s_col[d] and z[r] = Σ_d q[r][d]·zp[d];
void prescale_query(const float* q, int R, int D, const float* s_col, const float* zp, float* qs,
                    float* z);
// score[r][t] = s_row[t]·(score[r][t] + z[r])·scale;
void fold_scores(float* score, std::size_t stride, int R, int G, const float* s_row, const float* z,
                 float scale);
// zs[r] = Σ_t p[r][t]·zp[t], then p[r][t] *= s_row[t] (p in `score`);
void value_weights(float* score, std::size_t stride, int R, int G, const float* zp,
                   const float* s_row, float* zs);
// acc[r][d] += s_col[d]·(tmp[r][d] + zs[r]).
void accumulate_values(float* acc, const float* tmp, int R, int D, const float* s_col,
                       const float* zs);
// n fp16 values (unaligned bytes) to floats; false when one is NaN/Inf.
bool load_finite_halves(const std::uint8_t* src, int n, float* out);

// --- instruction sets -------------------------------------------------------------------------
// Name of the instruction set the dispatcher uses now ("AVX2", "AVX3", "SSE4", "EMU128", ...).
std::string target_name();
// Instruction sets compiled into the library and supported by this CPU, best first.
struct Target {
  std::int64_t bits;
  std::string name;
};
std::vector<Target> available_targets();
// Restricts dispatch to one target (tests and benchmarks); 0 restores the automatic choice.
void force_target(std::int64_t bits);

}  // namespace kvarn_cl::cpu::simd
