// The geometry build options that every program of a record geometry shares (program_table.hpp
// says which programs take them), and the launch shapes of the codec kernels (rotate, quantize,
// dequantize). The numbers come from kvarn_cl::RecordLayout, the one source of truth for record
// geometry, so the kernels and the CPU codec cannot disagree on them.
#pragma once

#include <string>

#include "kvarn_cl/format.hpp"

namespace kvarn_cl::opencl {

// -D options: KV_D, KV_G, KV_KB, KV_VB, KV_RECORD_BYTES, KV_K_ROW_BYTES, KV_V_ROW_BYTES, the
// KV_OFF_* byte offsets of every record field and KV_ROT_SCALE (the CPU's 1/sqrt(D), exact bits).
// Throws Unsupported if the layout breaks an alignment the kernels rely on.
std::string geometry_options(const CodecParams& params);

// Work-group size of the quantize kernel for a geometry and Q_RT (matches quantize.cl's Q_WG).
inline int quantize_work_group(const CodecParams& params, int tokens_per_item) {
  return (params.head_dim / 8) * (params.group() / tokens_per_item);
}
constexpr int kRotateWorkGroup = 256;     // rotate.cl ROT_WG
constexpr int kDequantizeWorkGroup = 64;  // dequantize.cl DQ_WG
// Work-items of the dequantize kernel per tile half: one per 8-token x 8-channel block
// (dequantize.cl DQ_BLOCKS).
inline int dequantize_items_per_tile(const CodecParams& params) {
  return (params.group() / 8) * (params.head_dim / 8);
}

}  // namespace kvarn_cl::opencl
