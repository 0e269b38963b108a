// Ablations of the KVarN tile codec, composed from the library's own pieces
// (kvarn_cl::detail::normalize, quantize_row) so that each row of the table differs from KVarN in
// exactly one ingredient. The library is not modified:
//   - no variance normalization: the library codec itself with sinkhorn_iters = 0;
//   - no rotation: normalization + rounding on unrotated rows (this file, normalize = true);
//   - neither: plain per-row min/max rounding (this file, normalize = false), i.e. per channel
//     across the tile's tokens for K and per token across channels for V.
// Scales are folded and rounded to fp16 exactly as SPEC §2.4 stores them, so the only
// differences from a record are the missing ingredients.
#pragma once

#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"

namespace kvarn_eval {

// k_rows, v_rows: G token-major fp16 rows of D channels (in whatever frame the caller uses).
// k_out, v_out: decoded G×D floats in that same frame.
void ablation_round_trip(const kvarn_cl::CodecParams& params, bool normalize,
                         const kvarn_cl::half_bits* k_rows, const kvarn_cl::half_bits* v_rows,
                         float* k_out, float* v_out);

}  // namespace kvarn_eval
