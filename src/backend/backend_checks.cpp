// Backend::first_row_out_of_range, the portable version: the rows are read back to the host (the
// CPU backend's read is a memcpy) and scanned.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl {

std::int64_t Backend::first_row_out_of_range(const Buffer& rows_buf, std::size_t rows, int head_dim,
                                             float max_abs) {
  if (head_dim <= 0) throw InvalidArgument("first_row_out_of_range: head_dim " + std::to_string(head_dim));
  const std::size_t row_values = std::size_t(head_dim);
  constexpr std::size_t kRowsPerRead = 256;
  std::vector<half_bits> chunk(kRowsPerRead * row_values);
  for (std::size_t first = 0; first < rows; first += kRowsPerRead) {
    const std::size_t n = std::min(kRowsPerRead, rows - first);
    read(rows_buf, first * row_values * 2, chunk.data(), n * row_values * 2);
    for (std::size_t i = 0; i < n * row_values; ++i)
      if (!(std::fabs(half_to_float(chunk[i])) <= max_abs))  // NaN fails the comparison too
        return std::int64_t(first + i / row_values);
  }
  return -1;
}

}  // namespace kvarn_cl
