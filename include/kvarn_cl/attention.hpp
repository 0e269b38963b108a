// Decode attention entry points besides the cache's own KVCache::attend:
// - exact_attention: the fp32 reference over given fp32 K/V (tests, demos, accuracy reports);
// - AttendPath: how KVCache::attend reads a compressed cache (fused from the records, or the
//   "materialize" baseline: dequantize every tile of the batch to fp16, then plain attention).
// The plain fp16 attention over an uncompressed cache is Backend::attend_fp16 (backend.hpp); the
// materialize path is Backend::dequantize + Backend::copy_rows + Backend::attend_fp16, so a backend
// that implements those four calls supports every path.
#pragma once

#include "kvarn_cl/backend.hpp"

namespace kvarn_cl {

enum class AttendPath {
  fused,        // SPEC §4: scores and values straight from the codes (the library's decode path)
  materialize,  // dequantize the batch's tiles to fp16 rows, then Backend::attend_fp16
};

// Exact attention of one query token over `tokens` cached tokens, one sequence:
// q [Hq][D], k and v [Hk][tokens][D] (any frame, as long as q is in the same one), out [Hq][D].
// Query head h reads KV head h / (Hq / Hk). Accumulates in double. tokens = 0 gives zeros.
// Throws InvalidArgument when Hq is not a positive multiple of Hk.
void exact_attention(const float* q, const float* k, const float* v, int num_q_heads,
                     int num_kv_heads, int head_dim, int tokens, float scale, float* out);

}  // namespace kvarn_cl
