// The agreement bar of SPEC §5 between two record sets of the same tiles (a kernel or SIMD path
// against the scalar reference): codes equal except at rounding ties, counted here, and the
// decoded scale products s_col_K[d]·s_row_K[t], zp_K[d]·s_row_K[t], s_row_V[t]·s_col_V[d],
// zp_V[t]·s_col_V[d] within rtol 1e-3 (the vectors themselves may trade a common factor where
// Sinkhorn iterations tie in imbalance to fp32 noise; the zero-point products relative to the
// decoded value range, as a zero point near 0 has no meaningful relative error). A common-factor
// trade re-rounds both stored fp16 factors of a product, which moves it by up to two fp16
// half-ulps (2 * 2^-11) on top of the 1e-3: that is the tolerance used.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"

namespace kvarn_cl::test {

inline std::vector<float> record_field(const std::uint8_t* rec, std::size_t off, int n) {
  std::vector<float> f(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    half_bits h;
    std::memcpy(&h, rec + off + 2 * std::size_t(i), sizeof h);
    f[std::size_t(i)] = half_to_float(h);
  }
  return f;
}

// Returns the number of differing codes over `tiles` records; adds a test failure (once per
// tile) for a scale product outside rtol 1e-3.
inline std::size_t records_agree(const CodecParams& params, const std::uint8_t* got,
                                 const std::uint8_t* want, std::size_t tiles) {
  const RecordLayout l = RecordLayout::make(params);
  const int G = l.group, D = l.head_dim;
  std::size_t differing = 0;
  std::vector<std::uint8_t> cg(std::size_t(std::max(G, D))), cw(cg.size());
  // step·col products within rtol 1e-3; zero·col products within 1e-3 of the decoded value
  // range ((2^bits - 1)·step·col), since a zero point near 0 has no meaningful relative error.
  constexpr float kRtol = 1e-3f + 2.0f / 2048.0f;
  auto products_close = [](const std::vector<float>& step1, const std::vector<float>& zero1,
                           const std::vector<float>& col1, const std::vector<float>& step2,
                           const std::vector<float>& zero2, const std::vector<float>& col2,
                           int bits) {
    const float levels = float((1 << bits) - 1);
    for (std::size_t i = 0; i < step1.size(); ++i)
      for (std::size_t j = 0; j < col1.size(); ++j) {
        const float x = step1[i] * col1[j], y = step2[i] * col2[j];
        if (!(std::fabs(x - y) <= kRtol * std::max(std::fabs(x), std::fabs(y)) + 1e-12f))
          return false;
        const float zx = zero1[i] * col1[j], zy = zero2[i] * col2[j];
        const float range = levels * std::max(std::fabs(x), std::fabs(y));
        if (!(std::fabs(zx - zy) <=
              kRtol * (std::max(std::fabs(zx), std::fabs(zy)) + range) + 1e-12f))
          return false;
      }
    return true;
  };
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::uint8_t* rg = got + t * l.bytes;
    const std::uint8_t* rw = want + t * l.bytes;
    for (int d = 0; d < D; ++d) {
      detail::unpack_codes(rg + l.k_codes + std::size_t(d) * l.k_row_bytes, G, l.k_bits, cg.data());
      detail::unpack_codes(rw + l.k_codes + std::size_t(d) * l.k_row_bytes, G, l.k_bits, cw.data());
      for (int i = 0; i < G; ++i) differing += cg[std::size_t(i)] != cw[std::size_t(i)];
    }
    for (int r = 0; r < G; ++r) {
      detail::unpack_codes(rg + l.v_codes + std::size_t(r) * l.v_row_bytes, D, l.v_bits, cg.data());
      detail::unpack_codes(rw + l.v_codes + std::size_t(r) * l.v_row_bytes, D, l.v_bits, cw.data());
      for (int i = 0; i < D; ++i) differing += cg[std::size_t(i)] != cw[std::size_t(i)];
    }
    const auto f = [&](const std::uint8_t* rec, std::size_t off, int n) {
      return record_field(rec, off, n);
    };
    const bool k_ok =
        products_close(f(rg, l.s_col_k, D), f(rg, l.zp_k, D), f(rg, l.s_row_k, G),
                       f(rw, l.s_col_k, D), f(rw, l.zp_k, D), f(rw, l.s_row_k, G), l.k_bits);
    const bool v_ok =
        products_close(f(rg, l.s_row_v, G), f(rg, l.zp_v, G), f(rg, l.s_col_v, D),
                       f(rw, l.s_row_v, G), f(rw, l.zp_v, G), f(rw, l.s_col_v, D), l.v_bits);
    if (!k_ok)
      ADD_FAILURE() << "K scale products of tile " << t << " differ by more than rtol 1e-3";
    if (!v_ok)
      ADD_FAILURE() << "V scale products of tile " << t << " differ by more than rtol 1e-3";
  }
  return differing;
}

}  // namespace kvarn_cl::test
