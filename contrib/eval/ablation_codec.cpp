#include "ablation_codec.hpp"

#include <cstdint>
#include <vector>

namespace kvarn_eval {
namespace {

float fp16_round(float x) { return kvarn_cl::half_to_float(kvarn_cl::float_to_half(x)); }

// Quantizes a rows×cols matrix row by row (after optional normalization) and writes its decoded
// values: out[r][c] = (code·fp16(br·scale) + fp16(br·lo))·fp16(bc).
void round_trip_matrix(const float* m, int rows, int cols, int bits, int iters, bool normalize,
                       float* out) {
  std::vector<float> bc(std::size_t(cols), 1.0f), br(std::size_t(rows), 1.0f);
  if (normalize) {
    const auto norm = kvarn_cl::detail::normalize(m, rows, cols, iters);
    bc = norm.col_scale;
    br = norm.row_scale;
  }
  std::vector<float> b(static_cast<std::size_t>(cols));
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
  for (int r = 0; r < rows; ++r) {
    const float* x = m + std::size_t(r) * cols;
    for (int c = 0; c < cols; ++c) b[std::size_t(c)] = (x[c] / bc[std::size_t(c)]) / br[std::size_t(r)];
    const auto q = kvarn_cl::detail::quantize_row(b.data(), cols, bits, codes.data());
    const float step = fp16_round(br[std::size_t(r)] * q.scale);
    const float zero = fp16_round(br[std::size_t(r)] * q.lo);
    for (int c = 0; c < cols; ++c)
      out[std::size_t(r) * cols + c] =
          (float(codes[std::size_t(c)]) * step + zero) * fp16_round(bc[std::size_t(c)]);
  }
}

}  // namespace

void ablation_round_trip(const kvarn_cl::CodecParams& params, bool normalize,
                         const kvarn_cl::half_bits* k_rows, const kvarn_cl::half_bits* v_rows,
                         float* k_out, float* v_out) {
  const int G = params.group(), D = params.head_dim;
  const std::size_t n = std::size_t(G) * D;
  std::vector<float> m(n), q(n);
  // K: rows = channels, columns = tokens.
  for (int t = 0; t < G; ++t)
    for (int d = 0; d < D; ++d)
      m[std::size_t(d) * G + t] = kvarn_cl::half_to_float(k_rows[std::size_t(t) * D + d]);
  round_trip_matrix(m.data(), D, G, params.k_bits(), params.sinkhorn_iters, normalize, q.data());
  for (int t = 0; t < G; ++t)
    for (int d = 0; d < D; ++d) k_out[std::size_t(t) * D + d] = q[std::size_t(d) * G + t];
  // V: rows = tokens, columns = channels.
  kvarn_cl::halves_to_floats(v_rows, m.data(), n);
  round_trip_matrix(m.data(), G, D, params.v_bits(), params.sinkhorn_iters, normalize, v_out);
}

}  // namespace kvarn_eval
