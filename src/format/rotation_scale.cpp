// rotation_scale (rotation_scale.hpp).
#include "format/rotation_scale.hpp"

#include <cmath>

namespace kvarn_cl::detail {

float rotation_scale(int n) noexcept {
  // Exact for 64 and 256 (1/8, 1/16); for 128 the correctly rounded fp32 value of 1/sqrt(128).
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
}

}  // namespace kvarn_cl::detail
