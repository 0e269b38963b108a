// The C API of per-layer preset plans: the chooser under a budget, its errors, the proxy
// sensitivity of captured rows, and a cache built from the plan.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kvarn_cl/kvarn_cl.h"

namespace {

std::string last_error() { return kvarn_cl_last_error(); }

const kvarn_cl_preset kLadder[2] = {KVARN_CL_K4V2_G128, KVARN_CL_K4V4_G128};
// Four layers, layer 2 by far the most sensitive at k4v2 ([layer][candidate]).
const double kError[8] = {0.010, 0.004, 0.012, 0.005, 0.090, 0.006, 0.011, 0.004};

TEST(CApiLayerPlan, OneUpgradeGoesToTheMostSensitiveLayer) {
  double b2 = 0, b4 = 0;
  ASSERT_EQ(kvarn_cl_preset_bytes_per_token_head(KVARN_CL_K4V2_G128, 64, &b2), KVARN_CL_OK)
      << last_error();
  ASSERT_EQ(kvarn_cl_preset_bytes_per_token_head(KVARN_CL_K4V4_G128, 64, &b4), KVARN_CL_OK)
      << last_error();
  EXPECT_EQ(b2, 57.0);
  EXPECT_EQ(b4, 73.0);
  kvarn_cl_preset plan[4];
  double bytes = 0;
  ASSERT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 4, kError, 64, (3 * b2 + b4) / 4, plan, &bytes),
            KVARN_CL_OK)
      << last_error();
  EXPECT_EQ(plan[0], KVARN_CL_K4V2_G128);
  EXPECT_EQ(plan[1], KVARN_CL_K4V2_G128);
  EXPECT_EQ(plan[2], KVARN_CL_K4V4_G128);
  EXPECT_EQ(plan[3], KVARN_CL_K4V2_G128);
  EXPECT_EQ(bytes, 61.0);
  // A total budget: 61 B/token/head over 1000 tokens, 3 heads, 4 layers.
  double budget = 0;
  ASSERT_EQ(kvarn_cl_budget_from_total_bytes(61u * 1000 * 3 * 4, 1000, 3, 4, &budget), KVARN_CL_OK);
  EXPECT_EQ(budget, 61.0);
  ASSERT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 4, kError, 64, budget - 0.5, plan, nullptr),
            KVARN_CL_OK);
  for (int l = 0; l < 4; ++l) EXPECT_EQ(plan[l], KVARN_CL_K4V2_G128) << l;

  // The plan builds a cache.
  kvarn_cl_backend* be = nullptr;
  ASSERT_EQ(kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 1, &be), KVARN_CL_OK);
  ASSERT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 4, kError, 64, 61, plan, nullptr), KVARN_CL_OK);
  kvarn_cl_cache_config cfg;
  kvarn_cl_cache_config_init(&cfg);
  cfg.head_dim = 64;
  cfg.num_layers = 4;
  cfg.max_tokens_per_sequence = 512;
  cfg.layer_presets = plan;
  kvarn_cl_cache* cache = nullptr;
  ASSERT_EQ(kvarn_cl_cache_create(be, &cfg, &cache), KVARN_CL_OK) << last_error();
  for (int l = 0; l < 4; ++l) {
    kvarn_cl_preset p;
    size_t record_bytes = 0;
    ASSERT_EQ(kvarn_cl_cache_layer_preset(cache, l, &p, &record_bytes), KVARN_CL_OK);
    EXPECT_EQ(p, plan[l]);
    EXPECT_EQ(record_bytes, l == 2 ? 73u * 128 : 57u * 128);
  }
  kvarn_cl_cache_destroy(cache);
  kvarn_cl_backend_destroy(be);
}

TEST(CApiLayerPlan, ErrorsNameTheArgument) {
  kvarn_cl_preset plan[4];
  EXPECT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 4, kError, 64, 50, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("budget 50 B/token/head is below the cheapest plan"),
            std::string::npos)
      << last_error();
  EXPECT_NE(last_error().find("k4v2_g128 takes 57"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_layer_plan_choose(nullptr, 2, 4, kError, 64, 64, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("presets is NULL"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 4, nullptr, 64, 64, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("error is NULL"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 0, kError, 64, 64, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("num_layers 0"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_layer_plan_choose(kLadder, 9, 4, kError, 64, 64, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("num_presets 9"), std::string::npos) << last_error();
  const kvarn_cl_preset bad[2] = {KVARN_CL_K4V2_G128, static_cast<kvarn_cl_preset>(42)};
  EXPECT_EQ(kvarn_cl_layer_plan_choose(bad, 2, 4, kError, 64, 64, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("invalid preset value 42"), std::string::npos) << last_error();
  const double nan_error[8] = {
      0.01, 0.004, std::numeric_limits<double>::quiet_NaN(), 0.005, 0.09, 0.006, 0.011, 0.004};
  EXPECT_EQ(kvarn_cl_layer_plan_choose(kLadder, 2, 4, nan_error, 64, 64, plan, nullptr),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("sensitivity.error[1][0]"), std::string::npos) << last_error();
  double b = 0;
  EXPECT_EQ(kvarn_cl_budget_from_total_bytes(100, 0, 1, 1, &b), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("tokens 0"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_preset_bytes_per_token_head(KVARN_CL_K4V2_G128, 100, &b),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("100"), std::string::npos) << last_error();
}

TEST(CApiLayerPlan, MeasuredSensitivityRanksPresets) {
  // Two layers of 256 tokens (two tiles), 2 heads, D 64, Gaussian rows.
  const int L = 2, T = 256, Hk = 2, D = 64;
  std::mt19937 rng(11);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> k(std::size_t(L) * T * Hk * D), v(k.size());
  for (auto& x : k) x = n(rng);
  for (auto& x : v) x = n(rng);
  double error[L * 2];
  ASSERT_EQ(
      kvarn_cl_layer_sensitivity_measure(kLadder, 2, D, 8, L, T, Hk, k.data(), v.data(), error),
      KVARN_CL_OK)
      << last_error();
  for (int l = 0; l < L; ++l) {
    EXPECT_GT(error[l * 2 + 1], 0) << l;
    EXPECT_LT(error[l * 2 + 1], error[l * 2]) << l;  // k4v4 below k4v2
  }
  EXPECT_EQ(
      kvarn_cl_layer_sensitivity_measure(kLadder, 2, D, 8, L, 100, Hk, k.data(), v.data(), error),
      KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("tokens 100"), std::string::npos) << last_error();
  EXPECT_EQ(
      kvarn_cl_layer_sensitivity_measure(kLadder, 2, D, 8, L, T, Hk, k.data(), nullptr, error),
      KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("v is NULL"), std::string::npos) << last_error();
  v[5] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(
      kvarn_cl_layer_sensitivity_measure(kLadder, 2, D, 8, L, T, Hk, k.data(), v.data(), error),
      KVARN_CL_NON_FINITE_INPUT);
  EXPECT_NE(last_error().find("v of layer 0, token 0, head 0"), std::string::npos) << last_error();
}

}  // namespace
