// llama.cpp's KV-cache block formats as SPEC §8 defines them, for the baseline rows of the
// accuracy table: blocks of 32 values along head_dim, per token.
//   q8_0: fp16 d + 32 int8 (34 B); d = max|x|/127, q = round(x/d), value q·d.
//   q4_0: fp16 d + 16 B of nibbles (18 B); d = m/−8 with m the value of largest magnitude,
//         q = min(15, trunc(x/d + 8.5)), value (q − 8)·d.
// Both follow ggml's reference quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref),
// including the reciprocal multiply and the fp16 rounding of d before decoding.
#pragma once

#include <cstddef>
#include <string>

namespace kvarn_eval {

enum class GgmlKvType { q8_0, q4_0 };

const char* to_string(GgmlKvType t);
std::size_t block_bytes(GgmlKvType t);  // bytes per 32 values
// Quantizes n values (n % 32 == 0) and writes their decoded values (the round trip).
void ggml_round_trip(GgmlKvType t, const float* x, float* y, std::size_t n);

}  // namespace kvarn_eval
