// The pieces of the CPU codec (SPEC §2.3–2.5) that the tests, the OpenCL cross-checks and the
// evaluation tools call one by one: variance normalization, row rounding, packing. Internal (not
// installed): tests and tools reach it through their private include of src/.
#pragma once

#include <cstdint>
#include <vector>

#include "format/rotation_scale.hpp"

namespace kvarn_cl::detail {

// imbalance(T) of SPEC §2.3 for a rows×cols row-major matrix.
double imbalance(const float* m, int rows, int cols);

struct Normalization {
  std::vector<float> col_scale;  // bc, length cols (exp(lc) of the best iteration, or 1)
  std::vector<float> row_scale;  // br, length rows
  double best_imbalance = 0;
  double initial_imbalance = 0;
  int best_iteration = 0;  // 0 = no scaling won
};
// Variance normalization of SPEC §2.3 on a rows×cols fp32 matrix (row-major).
Normalization normalize(const float* m, int rows, int cols, int iters);

// Row-wise asymmetric min/max rounding (SPEC §2.4) of one row of n values.
struct RowQuant {
  float lo;
  float scale;
};
RowQuant quantize_row(const float* row, int n, int bits, std::uint8_t* codes) noexcept;

// Packing of SPEC §2.5: code c lands in byte c/P at shift (c mod P)*bits.
void pack_codes(const std::uint8_t* codes, int n, int bits, std::uint8_t* out) noexcept;
void unpack_codes(const std::uint8_t* packed, int n, int bits, std::uint8_t* codes) noexcept;

}  // namespace kvarn_cl::detail
