// One tile: variance normalization, rounding and packing into a record (SPEC §2.3–2.5), and the
// decoding of a record. K tiles are normalized as D×G (rows = channels), V tiles as G×D.
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "cpu/codec_detail.hpp"
#include "cpu/tile_checks.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

// The codec's input bound (format.hpp kMaxRotatedMagnitude): finite, and small enough that every
// folded scale product of the record is a finite fp16.
void cpu::check_finite_rows(const half_bits* rows, int G, int D, const char* which) {
  for (int t = 0; t < G; ++t)
    for (int d = 0; d < D; ++d) {
      const half_bits h = rows[std::size_t(t) * D + d];
      if (!is_finite_half(h)) {
        std::ostringstream msg;
        msg << "non-finite value in " << which << " (token " << t << " of the tile, channel " << d
            << "): NaN and Inf cannot be quantized";
        throw NonFiniteInput(msg.str());
      }
      if (std::fabs(half_to_float(h)) > kMaxRotatedMagnitude) {
        std::ostringstream msg;
        msg << "value " << half_to_float(h) << " in " << which << " (token " << t
            << " of the tile, channel " << d << ") exceeds the codec's bound "
            << kMaxRotatedMagnitude << ": its zero point would overflow fp16";
        throw NonFiniteInput(msg.str());
      }
    }
}

void cpu::load_record_halves(const std::uint8_t* src, int n, float* out, const char* field) {
  for (int i = 0; i < n; ++i) {
    half_bits h;
    std::memcpy(&h, src + 2 * std::size_t(i), sizeof h);
    if (!is_finite_half(h)) {
      std::ostringstream msg;
      msg << "corrupt record: " << field << '[' << i << "] is not finite (0x" << std::hex << h
          << ')';
      throw CorruptRecord(msg.str());
    }
    out[i] = half_to_float(h);
  }
}

namespace {

void store_halves(const std::vector<float>& v, std::uint8_t* dst) {
  std::vector<half_bits> h(v.size());
  floats_to_halves(v.data(), h.data(), v.size());
  std::memcpy(dst, h.data(), h.size() * sizeof(half_bits));
}

std::vector<float> load_halves(const std::uint8_t* src, int n, const char* field) {
  std::vector<float> f(static_cast<std::size_t>(n));
  cpu::load_record_halves(src, n, f.data(), field);
  return f;
}

// Normalizes and rounds a rows×cols matrix; writes packed rows (row_bytes each) and returns the
// folded vectors: row_scale·scale, row_scale·lo (per row) and the column scales.
struct QuantizedMatrix {
  std::vector<float> row_step;   // br·scale
  std::vector<float> row_zero;   // br·lo
  std::vector<float> col_scale;  // bc
};

QuantizedMatrix quantize_matrix(const float* m, int rows, int cols, int bits, int iters,
                                std::uint8_t* packed, std::size_t row_bytes) {
  const detail::Normalization norm = detail::normalize(m, rows, cols, iters);
  QuantizedMatrix q;
  q.row_step.resize(std::size_t(rows));
  q.row_zero.resize(std::size_t(rows));
  q.col_scale = norm.col_scale;
  std::vector<float> b(static_cast<std::size_t>(cols));
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
  for (int r = 0; r < rows; ++r) {
    const float* x = m + std::size_t(r) * cols;
    const float br = norm.row_scale[std::size_t(r)];
    for (int c = 0; c < cols; ++c) b[std::size_t(c)] = (x[c] / norm.col_scale[std::size_t(c)]) / br;
    const detail::RowQuant rq = detail::quantize_row(b.data(), cols, bits, codes.data());
    detail::pack_codes(codes.data(), cols, bits, packed + std::size_t(r) * row_bytes);
    q.row_step[std::size_t(r)] = br * rq.scale;
    q.row_zero[std::size_t(r)] = br * rq.lo;
  }
  return q;
}

}  // namespace

void quantize_tile(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                   std::uint8_t* record) {
  const RecordLayout l = RecordLayout::make(params);
  const int G = l.group, D = l.head_dim;
  cpu::check_finite_rows(k_rot, G, D, "keys");
  cpu::check_finite_rows(v_rot, G, D, "values");

  // K: rows = channels, columns = tokens (transpose of the token-major input).
  std::vector<float> m(std::size_t(G) * D);
  for (int t = 0; t < G; ++t)
    for (int d = 0; d < D; ++d)
      m[std::size_t(d) * G + t] = half_to_float(k_rot[std::size_t(t) * D + d]);
  const QuantizedMatrix k = quantize_matrix(m.data(), D, G, l.k_bits, params.sinkhorn_iters,
                                            record + l.k_codes, l.k_row_bytes);
  store_halves(k.row_step, record + l.s_col_k);
  store_halves(k.row_zero, record + l.zp_k);
  store_halves(k.col_scale, record + l.s_row_k);

  // V: rows = tokens, columns = channels (the input as it is).
  halves_to_floats(v_rot, m.data(), m.size());
  const QuantizedMatrix v = quantize_matrix(m.data(), G, D, l.v_bits, params.sinkhorn_iters,
                                            record + l.v_codes, l.v_row_bytes);
  store_halves(v.col_scale, record + l.s_col_v);
  store_halves(v.row_step, record + l.s_row_v);
  store_halves(v.row_zero, record + l.zp_v);
}

void dequantize_tile(const CodecParams& params, const std::uint8_t* record, float* k_out,
                     float* v_out, Frame frame) {
  const RecordLayout l = RecordLayout::make(params);
  const int G = l.group, D = l.head_dim;
  validate_records(params, record, 1);  // finite, non-negative step and column scales
  const std::vector<float> s_col_k = load_halves(record + l.s_col_k, D, "s_col_K");
  const std::vector<float> zp_k = load_halves(record + l.zp_k, D, "zp_K");
  const std::vector<float> s_row_k = load_halves(record + l.s_row_k, G, "s_row_K");
  const std::vector<float> s_col_v = load_halves(record + l.s_col_v, D, "s_col_V");
  const std::vector<float> s_row_v = load_halves(record + l.s_row_v, G, "s_row_V");
  const std::vector<float> zp_v = load_halves(record + l.zp_v, G, "zp_V");

  std::vector<std::uint8_t> codes(std::size_t(std::max(G, D)));
  for (int d = 0; d < D; ++d) {
    detail::unpack_codes(record + l.k_codes + std::size_t(d) * l.k_row_bytes, G, l.k_bits,
                         codes.data());
    for (int t = 0; t < G; ++t)
      k_out[std::size_t(t) * D + d] =
          (float(codes[std::size_t(t)]) * s_col_k[std::size_t(d)] + zp_k[std::size_t(d)]) *
          s_row_k[std::size_t(t)];
  }
  for (int t = 0; t < G; ++t) {
    detail::unpack_codes(record + l.v_codes + std::size_t(t) * l.v_row_bytes, D, l.v_bits,
                         codes.data());
    for (int d = 0; d < D; ++d)
      v_out[std::size_t(t) * D + d] =
          (float(codes[std::size_t(d)]) * s_row_v[std::size_t(t)] + zp_v[std::size_t(t)]) *
          s_col_v[std::size_t(d)];
  }
  if (frame == Frame::original) {
    for (int t = 0; t < G; ++t) {
      fwht_inplace(k_out + std::size_t(t) * D, D);
      fwht_inplace(v_out + std::size_t(t) * D, D);
    }
  }
}

}  // namespace kvarn_cl
