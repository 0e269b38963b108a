#include "common/test_support.hpp"

namespace kvarn_cl::test {

std::vector<float> gaussian_rows(std::size_t rows, int cols, std::uint32_t seed,
                                 const std::vector<int>& outlier_channels, float outlier_gain) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(rows * std::size_t(cols));
  for (auto& x : v) x = normal(rng);
  for (std::size_t r = 0; r < rows; ++r)
    for (int c : outlier_channels) v[r * cols + c] *= outlier_gain;
  return v;
}

std::vector<half_bits> to_half(const std::vector<float>& v) {
  std::vector<half_bits> h(v.size());
  floats_to_halves(v.data(), h.data(), v.size());
  return h;
}

std::vector<float> to_float(const std::vector<half_bits>& v) {
  std::vector<float> f(v.size());
  halves_to_floats(v.data(), f.data(), v.size());
  return f;
}

}  // namespace kvarn_cl::test
