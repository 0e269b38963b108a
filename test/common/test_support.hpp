// Helpers shared by the test suites: seeded data generators and fp16 conversion of whole arrays.
// The error measure is the library's relative_error (kvarn_cl/codec.hpp).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kvarn_cl/codec.hpp"  // relative_error
#include "kvarn_cl/half.hpp"

namespace kvarn_cl::test {

// rows × cols N(0,1) values; every channel listed in outlier_channels is multiplied by outlier_gain.
std::vector<float> gaussian_rows(std::size_t rows, int cols, std::uint32_t seed,
                                 const std::vector<int>& outlier_channels = {},
                                 float outlier_gain = 20.0f);
std::vector<half_bits> to_half(const std::vector<float>& v);
std::vector<float> to_float(const std::vector<half_bits>& v);

}  // namespace kvarn_cl::test
