// Rotation of SPEC §2.2: fast Walsh–Hadamard transform in fp32, then the 1/sqrt(D) scale, rounded
// to fp16 (nearest even). The butterfly order is the textbook radix-2 order (stride 1, 2, 4, ...);
// the OpenCL kernels use the same order so both produce the same bits.
#include <cmath>
#include <type_traits>
#include <vector>

#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

void fwht_inplace(float* row, int n) noexcept {
  for (int h = 1; h < n; h <<= 1) {
    for (int i = 0; i < n; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const float a = row[j];
        const float b = row[j + h];
        row[j] = a + b;
        row[j + h] = a - b;
      }
    }
  }
  const float scale = detail::rotation_scale(n);
  for (int i = 0; i < n; ++i) row[i] *= scale;
}

namespace {

template <typename In>
void rotate_rows_impl(const In* in, half_bits* out, std::size_t rows, int head_dim) {
  validate_head_dim(head_dim);
  std::vector<float> row(static_cast<std::size_t>(head_dim));
  const std::size_t D = std::size_t(head_dim);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t d = 0; d < D; ++d) {
      if constexpr (std::is_same_v<In, float>) {
        row[d] = in[r * D + d];
      } else {
        row[d] = half_to_float(in[r * D + d]);
      }
    }
    fwht_inplace(row.data(), head_dim);
    floats_to_halves(row.data(), out + r * D, D);
  }
}

}  // namespace

void rotate_rows(const float* in, half_bits* out, std::size_t rows, int head_dim) {
  rotate_rows_impl(in, out, rows, head_dim);
}

void rotate_rows(const half_bits* in, half_bits* out, std::size_t rows, int head_dim) {
  rotate_rows_impl(in, out, rows, head_dim);
}
}  // namespace kvarn_cl
