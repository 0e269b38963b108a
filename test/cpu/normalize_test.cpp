// Variance normalization (SPEC §2.3).
#include <gtest/gtest.h>

#include <cmath>

#include "common/test_support.hpp"
#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"

using namespace kvarn_cl;

TEST(Imbalance, HandComputed) {
  // Rows (1,2,3) and (2,4,6): row stds 1 and 2; column stds 1/sqrt2, sqrt2, 3/sqrt2.
  // imbalance = (3/sqrt2)/(1/sqrt2) + 2/1 = 5.
  const float m[6] = {1, 2, 3, 2, 4, 6};
  EXPECT_NEAR(detail::imbalance(m, 2, 3), 5.0, 1e-6);
}

TEST(Imbalance, PerfectlyBalancedIsTwo) {
  const float m[4] = {1, -1, -1, 1};
  EXPECT_NEAR(detail::imbalance(m, 2, 2), 2.0, 1e-6);
}

TEST(Imbalance, ZeroStdIsFlooredNotDividedByZero) {
  const float m[4] = {1, 1, 1, 1};  // every std is 0: 0 / 1e-8 twice
  EXPECT_EQ(detail::imbalance(m, 2, 2), 0.0);
}

TEST(Normalize, ZeroIterationsKeepsTheUnscaledMatrix) {
  auto m = test::gaussian_rows(128, 128, 5, {1, 7}, 20.0f);
  const auto n = detail::normalize(m.data(), 128, 128, 0);
  EXPECT_EQ(n.best_iteration, 0);
  for (float s : n.col_scale) EXPECT_EQ(s, 1.0f);
  for (float s : n.row_scale) EXPECT_EQ(s, 1.0f);
  EXPECT_EQ(n.best_imbalance, n.initial_imbalance);
}

TEST(Normalize, NeverEndsWorseThanTheUnscaledTile) {
  for (std::uint32_t seed = 0; seed < 12; ++seed) {
    for (int iters : {1, 4, 8, 16}) {
      const int rows = seed % 2 ? 128 : 64, cols = 128;
      auto m = test::gaussian_rows(std::size_t(rows), cols, seed, {int(seed % 5), 17}, 20.0f);
      // Token-wise scale structure as real keys have (a few loud tokens).
      for (int c = 0; c < cols; c += 31)
        for (int r = 0; r < rows; ++r) m[std::size_t(r) * cols + c] *= 6.0f;
      const auto n = detail::normalize(m.data(), rows, cols, iters);
      EXPECT_LE(n.best_imbalance, n.initial_imbalance) << "seed " << seed << " iters " << iters;
      // The reported best is the imbalance of M scaled by the chosen vectors.
      std::vector<float> b(m.size());
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c)
          b[std::size_t(r) * cols + c] = m[std::size_t(r) * cols + c] /
                                         n.col_scale[std::size_t(c)] / n.row_scale[std::size_t(r)];
      EXPECT_NEAR(detail::imbalance(b.data(), rows, cols), n.best_imbalance,
                  1e-4 * n.best_imbalance);
    }
  }
}

TEST(Normalize, BalancesAStronglyScaledMatrix) {
  // Rows scaled by 1..8 and columns by 1..4: normalization must bring imbalance close to 2.
  const int rows = 64, cols = 128;
  auto m = test::gaussian_rows(rows, cols, 9);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      m[std::size_t(r) * cols + c] *= float(1 + r % 8) * float(1 + c % 4);
  const auto n = detail::normalize(m.data(), rows, cols, 8);
  EXPECT_GT(n.initial_imbalance, 10.0);
  EXPECT_LT(n.best_imbalance, 3.5);
  EXPECT_GT(n.best_iteration, 0);
  // Scales are exp of log-scales clamped to [-0.3, 10].
  for (float s : n.col_scale) {
    EXPECT_GE(s, std::exp(-0.3f) * 0.9999f);
    EXPECT_LE(s, std::exp(10.0f) * 1.0001f);
  }
}
