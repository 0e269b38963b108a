// Record layout of SPEC §2.5: K codes, s_col_K, zp_K, s_row_K, V codes, s_col_V, s_row_V, zp_V.
#include "kvarn_cl/format.hpp"

namespace kvarn_cl {

RecordLayout RecordLayout::make(const CodecParams& params) {
  params.validate();
  RecordLayout l;
  l.head_dim = params.head_dim;
  l.group = params.group();
  l.k_bits = params.k_bits();
  l.v_bits = params.v_bits();
  const std::size_t D = std::size_t(l.head_dim), G = std::size_t(l.group), h = 2;
  l.k_row_bytes = G * std::size_t(l.k_bits) / 8;
  l.v_row_bytes = D * std::size_t(l.v_bits) / 8;
  std::size_t at = 0;
  l.k_codes = at;
  at += D * l.k_row_bytes;
  l.s_col_k = at;
  at += D * h;
  l.zp_k = at;
  at += D * h;
  l.s_row_k = at;
  at += G * h;
  l.v_codes = at;
  at += G * l.v_row_bytes;
  l.s_col_v = at;
  at += D * h;
  l.s_row_v = at;
  at += G * h;
  l.zp_v = at;
  at += G * h;
  l.bytes = at;
  return l;
}

}  // namespace kvarn_cl
