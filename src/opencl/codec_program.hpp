// The codec program (rotate, quantize, dequantize kernels) and the geometry build options that
// every kernel of a record geometry shares. The numbers come from kvarn_cl::RecordLayout, the one
// source of truth for record geometry, so the kernels and the CPU codec cannot disagree on them.
#pragma once

#include <string>

#include "kvarn_cl/format.hpp"
#include "opencl/device_runtime.hpp"

namespace kvarn_cl::opencl {

// -D options: KV_D, KV_G, KV_KB, KV_VB, KV_RECORD_BYTES, KV_K_ROW_BYTES, KV_V_ROW_BYTES, the
// KV_OFF_* byte offsets of every record field and KV_ROT_SCALE (the CPU's 1/sqrt(D), exact bits).
// Throws Unsupported if the layout breaks an alignment the kernels rely on.
std::string geometry_options(const CodecParams& params);

// Kernel files of the codec program, in build order.
const std::vector<std::string>& codec_files();

// The codec program spec for params; tokens_per_item is the quantize kernel's Q_RT (8 or 16).
// unroll adds -DKV_UNROLL=1 (common.cl): full unrolling of the loops over private tile values,
// which a GPU needs to keep them in registers and a CPU compiler (PoCL) is slowed down by; the
// backend passes caps().type == "gpu".
ProgramSpec codec_program(const CodecParams& params, int tokens_per_item = 8, bool unroll = false);

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
