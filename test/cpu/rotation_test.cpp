// Rotation of SPEC §2.2: the FWHT equals multiplication by the explicit Sylvester matrix / sqrt(D),
// H·H = I, and rotated rows are rounded to fp16.
#include <gtest/gtest.h>

#include <bitset>
#include <cmath>

#include "common/test_support.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

using namespace kvarn_cl;

namespace {
// Sylvester Hadamard entry H[i][j] = (-1)^popcount(i & j), normalized.
double sylvester(int i, int j, int n) {
  return (std::bitset<32>(unsigned(i & j)).count() % 2 ? -1.0 : 1.0) / std::sqrt(double(n));
}
}  // namespace

class Rotation : public ::testing::TestWithParam<int> {};

TEST_P(Rotation, FwhtEqualsExplicitMatrix) {
  const int D = GetParam();
  auto x = test::gaussian_rows(1, D, 7);
  std::vector<float> y = x;
  fwht_inplace(y.data(), D);
  for (int j = 0; j < D; ++j) {
    double ref = 0;
    for (int i = 0; i < D; ++i) ref += x[std::size_t(i)] * sylvester(i, j, D);
    EXPECT_NEAR(y[std::size_t(j)], ref, 1e-5) << "channel " << j;
  }
}

TEST_P(Rotation, HTimesHIsIdentity) {
  const int D = GetParam();
  // Column by column: H·(H·e_i) = e_i.
  for (int i = 0; i < D; ++i) {
    std::vector<float> e(std::size_t(D), 0.0f);
    e[std::size_t(i)] = 1.0f;
    fwht_inplace(e.data(), D);
    for (int j = 0; j < D; ++j) EXPECT_NEAR(e[std::size_t(j)], sylvester(i, j, D), 1e-7);
    fwht_inplace(e.data(), D);
    for (int j = 0; j < D; ++j) EXPECT_NEAR(e[std::size_t(j)], i == j ? 1.0 : 0.0, 1e-6);
  }
}

TEST_P(Rotation, RotateRowsRoundsTheFp32ResultToFp16) {
  const int D = GetParam();
  const std::size_t rows = 5;
  auto x = test::gaussian_rows(rows, D, 11, {3}, 20.0f);
  std::vector<half_bits> from_float(rows * D), from_half(rows * D);
  rotate_rows(x.data(), from_float.data(), rows, D);
  auto xh = test::to_half(x);
  rotate_rows(xh.data(), from_half.data(), rows, D);
  for (std::size_t r = 0; r < rows; ++r) {
    std::vector<float> row(x.begin() + long(r * D), x.begin() + long((r + 1) * D));
    fwht_inplace(row.data(), D);
    for (int d = 0; d < D; ++d)
      EXPECT_EQ(from_float[r * D + std::size_t(d)], float_to_half(row[std::size_t(d)]));
  }
  // From fp16 input the rows agree with the fp32 path to fp16 accuracy.
  EXPECT_LT(relative_error(test::to_float(from_half), test::to_float(from_float)), 2e-3);
}

TEST(Rotation, RejectsUnsupportedHeadDim) {
  std::vector<float> x(96);
  std::vector<half_bits> y(96);
  EXPECT_THROW(rotate_rows(x.data(), y.data(), 1, 96), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(HeadDims, Rotation, ::testing::Values(64, 128, 256));
