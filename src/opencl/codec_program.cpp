// Geometry build options from RecordLayout.
#include "opencl/codec_program.hpp"

#include <cstdio>
#include <sstream>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::opencl {

std::string geometry_options(const CodecParams& params) {
  const RecordLayout l = RecordLayout::make(params);
  // The kernels read codes and records with 16-byte loads and rows with 8-channel vectors.
  const bool aligned = l.bytes % 16 == 0 && l.k_codes % 16 == 0 && l.v_codes % 16 == 0 &&
                       l.k_row_bytes % 16 == 0 && l.v_row_bytes % 4 == 0 && l.head_dim % 64 == 0;
  if (!aligned)
    throw Unsupported("record layout of " + to_string(params.preset) + " with head_dim " +
                      std::to_string(params.head_dim) + " breaks the alignment the OpenCL kernels need");
  char scale[64];
  std::snprintf(scale, sizeof scale, "%af", double(detail::rotation_scale(l.head_dim)));
  std::ostringstream o;
  o << "-DKV_D=" << l.head_dim << " -DKV_G=" << l.group << " -DKV_KB=" << l.k_bits
    << " -DKV_VB=" << l.v_bits << " -DKV_RECORD_BYTES=" << l.bytes << "UL"
    << " -DKV_K_ROW_BYTES=" << l.k_row_bytes << " -DKV_V_ROW_BYTES=" << l.v_row_bytes
    << " -DKV_OFF_K_CODES=" << l.k_codes << " -DKV_OFF_S_COL_K=" << l.s_col_k
    << " -DKV_OFF_ZP_K=" << l.zp_k << " -DKV_OFF_S_ROW_K=" << l.s_row_k
    << " -DKV_OFF_V_CODES=" << l.v_codes << " -DKV_OFF_S_COL_V=" << l.s_col_v
    << " -DKV_OFF_S_ROW_V=" << l.s_row_v << " -DKV_OFF_ZP_V=" << l.zp_v
    << " -DKV_ROT_SCALE=" << scale << " -DKV_MAX_ABS=" << kMaxRotatedMagnitude << ".0f";
  return o.str();
}

}  // namespace kvarn_cl::opencl
