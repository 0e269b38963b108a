// The KVarN tile codec on the CPU (SPEC §2): the library's numeric reference and its fallback.
//
// Frames (format.hpp): records always hold rotated-frame data.
// Row layout everywhere: token-major [tokens][head_dim], fp16 as raw IEEE bits (half_bits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>  // relative_error

#include "kvarn_cl/cpu_threads.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl {

// --- rotation (SPEC §2.2) -------------------------------------------------------------------
// In-place fast Walsh–Hadamard transform of one row of n floats, followed by the 1/sqrt(n) scale.
// H is symmetric and orthonormal, so the same call rotates and rotates back.
void fwht_inplace(float* row, int n) noexcept;
// rows × head_dim values in, rotated fp16 rows out (computed in fp32, rounded to nearest even).
void rotate_rows(const float* in, half_bits* out, std::size_t rows, int head_dim);
void rotate_rows(const half_bits* in, half_bits* out, std::size_t rows, int head_dim);

// --- one tile --------------------------------------------------------------------------------
// k_rot, v_rot: G rotated fp16 rows of D channels each (token-major). record: layout.bytes bytes.
// Throws NonFiniteInput if a value is NaN/Inf.
void quantize_tile(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                   std::uint8_t* record);
// Decodes a record into G×D floats per K and V (token-major), in the rotated frame or rotated back.
// Throws CorruptRecord if a scale vector holds NaN/Inf.
void dequantize_tile(const CodecParams& params, const std::uint8_t* record, float* k_out,
                     float* v_out, Frame frame = Frame::rotated);

// --- many tiles, spread over threads ---------------------------------------------------------
// These run the SIMD paths (held to quantize_tile / dequantize_tile above, the reference, by the
// tests) on the process-wide ThreadPool::shared(); `count` caps the threads used (0 = all of
// the pool, which has KVARN_CL_THREADS or hardware_concurrency() threads).
// tiles × G rows each; tile i reads k_rot + i*G*D and writes records + i*layout.bytes.
void quantize_tiles(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                    std::size_t tiles, std::uint8_t* records, CpuThreads threads = {});
// Decodes tiles records into fp16 rows (rounded to nearest even), token-major per tile.
void dequantize_tiles(const CodecParams& params, const std::uint8_t* records, std::size_t tiles,
                      half_bits* k_out, half_bits* v_out, Frame frame = Frame::rotated,
                      CpuThreads threads = {});

// The pieces of the codec (normalization, row rounding, packing) are internal:
// src/cpu/codec_detail.hpp, for the library's tests and tools.

// --- the yardstick ----------------------------------------------------------------------------
// Exact attention of one query token over `tokens` cached tokens, one sequence:
// q [Hq][D], k and v [Hk][tokens][D] (any frame, as long as q is in the same one), out [Hq][D].
// Query head h reads KV head h / (Hq / Hk). Accumulates in double. tokens = 0 gives zeros.
// Throws InvalidArgument when Hq is not a positive multiple of Hk. (src/cpu/exact_attention.cpp)
void exact_attention(const float* q, const float* k, const float* v, int num_q_heads,
                     int num_kv_heads, int head_dim, int tokens, float scale, float* out);

// The relative error that SPEC §5's "relative" bars are checked with (tests, kvarn-cl demo):
// ||got - want|| / ||want|| (L2 over all values, summed in double), or ||got - want|| when want
// is all zeros. Throws InvalidArgument when the
// sizes differ. (src/cpu/relative_error.cpp)
double relative_error(const std::vector<float>& got, const std::vector<float>& want);

}  // namespace kvarn_cl
