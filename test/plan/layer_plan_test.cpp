// Per-layer preset plans (include/kvarn_cl/layer_plan.hpp): the greedy choice under a budget, its
// errors, the proxy sensitivity of captured rows, and a plan a KVCache takes as layer presets.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kvarn_cl/kvarn_cl.hpp"

namespace kvarn_cl {
namespace {

constexpr int kD = 64;  // SmolLM2-135M's head_dim: k4v2_g128 57 B/token/head, k4v4_g128 73 B

template <typename F>
std::string invalid_argument_message(F&& f) {
  try {
    f();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InvalidArgument thrown";
  return "";
}

LayerSensitivity four_layers_layer2_most_sensitive() {
  return LayerSensitivity{{Preset::k4v2_g128, Preset::k4v4_g128},
                          {{0.010, 0.004}, {0.012, 0.005}, {0.090, 0.006}, {0.011, 0.004}}};
}

TEST(LayerPlan, PresetBytesAreRecordBytesPerToken) {
  EXPECT_DOUBLE_EQ(preset_bytes_per_token_head(Preset::k4v2_g128, kD), 57.0);
  EXPECT_DOUBLE_EQ(preset_bytes_per_token_head(Preset::k4v4_g128, kD), 73.0);
  CodecParams c;
  c.preset = Preset::k4v2_g64;
  c.head_dim = 128;
  EXPECT_DOUBLE_EQ(preset_bytes_per_token_head(Preset::k4v2_g64, 128),
                   double(RecordLayout::make(c).bytes) / 64);
  EXPECT_DOUBLE_EQ(budget_from_total_bytes(61 * 1000 * 3 * 4, 1000, 3, 4), 61.0);
  EXPECT_NE(invalid_argument_message([] { budget_from_total_bytes(1, 0, 1, 1); }).find("tokens 0"),
            std::string::npos);
  EXPECT_NE(
      invalid_argument_message([] { budget_from_total_bytes(1, 1, 1, 0); }).find("num_layers 0"),
      std::string::npos);
}

TEST(LayerPlan, BudgetForOneUpgradeKeepsTheMostSensitiveLayerAtK4v4) {
  const LayerSensitivity s = four_layers_layer2_most_sensitive();
  const double one_upgrade = (3 * 57.0 + 73.0) / 4;  // 61
  const LayerPlan p = choose_layer_presets(s, kD, one_upgrade);
  const std::vector<Preset> want = {Preset::k4v2_g128, Preset::k4v2_g128, Preset::k4v4_g128,
                                    Preset::k4v2_g128};
  EXPECT_EQ(p.presets, want);
  EXPECT_DOUBLE_EQ(p.bytes_per_token_head, 61.0);
  EXPECT_DOUBLE_EQ(p.budget, one_upgrade);
  EXPECT_DOUBLE_EQ(p.predicted_error, 0.010 + 0.012 + 0.006 + 0.011);
  // Just below it, nothing fits but the cheapest plan.
  const LayerPlan below = choose_layer_presets(s, kD, 60.99);
  EXPECT_EQ(below.presets, std::vector<Preset>(4, Preset::k4v2_g128));
  EXPECT_DOUBLE_EQ(below.bytes_per_token_head, 57.0);
  // Enough for everything: every layer upgrades (each gains).
  EXPECT_EQ(choose_layer_presets(s, kD, 73.0).presets, std::vector<Preset>(4, Preset::k4v4_g128));
}

TEST(LayerPlan, BudgetBelowTheCheapestPlanNamesBoth) {
  const std::string m = invalid_argument_message(
      [] { choose_layer_presets(four_layers_layer2_most_sensitive(), kD, 50); });
  EXPECT_NE(m.find("budget 50 B/token/head"), std::string::npos) << m;
  EXPECT_NE(m.find("k4v2_g128"), std::string::npos) << m;
  EXPECT_NE(m.find("57 B/token/head"), std::string::npos) << m;
  for (double bad : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()})
    EXPECT_NE(invalid_argument_message([&] {
                choose_layer_presets(four_layers_layer2_most_sensitive(), kD, bad);
              }).find("budget"),
              std::string::npos);
}

TEST(LayerPlan, NeverExceedsTheBudgetAndIgnoresCandidateOrder) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 200; ++trial) {
    LayerSensitivity s{{Preset::k4v4_g128, Preset::k2v2_g128, Preset::k4v2_g128},
                       {}};  // not cheapest first
    const int layers = 1 + trial % 30;
    for (int l = 0; l < layers; ++l) {
      const double e2 = u(rng), e42 = e2 * u(rng), e44 = e42 * u(rng);
      s.error.push_back({e44, e2, e42});
    }
    const double budget = 41.0 + u(rng) * 40.0;  // k2v2_g128 takes 41 B at D 64
    const LayerPlan p = choose_layer_presets(s, kD, budget);
    ASSERT_EQ(p.presets.size(), std::size_t(layers));
    double bytes = 0;
    for (Preset q : p.presets) bytes += preset_bytes_per_token_head(q, kD);
    EXPECT_DOUBLE_EQ(p.bytes_per_token_head, bytes / layers);
    EXPECT_LE(p.bytes_per_token_head, budget) << "trial " << trial;
    // The same candidates in another order give the same plan.
    LayerSensitivity r{{Preset::k2v2_g128, Preset::k4v2_g128, Preset::k4v4_g128}, {}};
    for (const auto& row : s.error) r.error.push_back({row[1], row[2], row[0]});
    EXPECT_EQ(choose_layer_presets(r, kD, budget).presets, p.presets) << "trial " << trial;
  }
}

TEST(LayerPlan, BadSensitivityIsNamed) {
  auto msg = [](LayerSensitivity s) {
    return invalid_argument_message([&] { choose_layer_presets(s, kD, 64); });
  };
  LayerSensitivity s = four_layers_layer2_most_sensitive();
  s.error[1].pop_back();
  EXPECT_NE(msg(s).find("sensitivity.error[1] has 1 values for 2"), std::string::npos) << msg(s);
  s = four_layers_layer2_most_sensitive();
  s.error[3][1] = -0.5;
  EXPECT_NE(msg(s).find("sensitivity.error[3][1] (k4v4_g128) -0.5"), std::string::npos) << msg(s);
  s.error[3][1] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(msg(s).find("sensitivity.error[3][1]"), std::string::npos) << msg(s);
  s = four_layers_layer2_most_sensitive();
  s.presets[1] = Preset::k4v2_g128;
  EXPECT_NE(msg(s).find("repeats"), std::string::npos) << msg(s);
  s.presets[1] = Preset::k4v4_g64;
  EXPECT_NE(msg(s).find("tile size 64"), std::string::npos) << msg(s);
  s.presets.clear();
  EXPECT_NE(msg(s).find("sensitivity.presets is empty"), std::string::npos) << msg(s);
  s = four_layers_layer2_most_sensitive();
  s.error.clear();
  EXPECT_NE(msg(s).find("no layers"), std::string::npos) << msg(s);
  EXPECT_NE(invalid_argument_message([] {
              choose_layer_presets(four_layers_layer2_most_sensitive(), 96, 64);
            }).find("96"),
            std::string::npos);
}

// Captured rows of SmolLM2-135M (test/data/README.md): one tile of one head from each of six
// (layer, head) pairs, read here as six layers of one head.
std::vector<float> captured(bool keys, std::vector<std::string>& names) {
  names = {"smollm2_L00_h0_t1", "smollm2_L00_h1_t1", "smollm2_L07_h1_t1",
           "smollm2_L19_h0_t1", "smollm2_L26_h2_t1", "smollm2_L29_h2_t1"};
  std::vector<float> out;
  for (const auto& n : names) {
    std::ifstream f(std::string(KVARN_CL_SOURCE_DIR) + "/test/data/" + n + ".kv16",
                    std::ios::binary);
    std::vector<half_bits> kv(2 * 128 * kD);
    f.read(reinterpret_cast<char*>(kv.data()), std::streamsize(kv.size() * 2));
    EXPECT_TRUE(f.good()) << n;
    for (int t = 0; t < 128; ++t) {
      std::vector<float> row(kD);
      for (int c = 0; c < kD; ++c)
        row[std::size_t(c)] = half_to_float(kv[std::size_t((keys ? t : 128 + t) * kD + c)]);
      fwht_inplace(row.data(),
                   kD);  // stored rotated; H is its own inverse: back to the model's frame
      out.insert(out.end(), row.begin(), row.end());
    }
  }
  return out;
}

TEST(LayerSensitivityMeasure, RealRowsMatchTheReferenceCodecAndRankPresets) {
  std::vector<std::string> names;
  const std::vector<float> k = captured(true, names), v = captured(false, names);
  const int layers = int(names.size());
  CodecParams codec;
  codec.head_dim = kD;
  const std::vector<Preset> presets = {Preset::k4v4_g128, Preset::k4v2_g128, Preset::k2v2_g128};
  const LayerSensitivity s =
      measure_layer_sensitivity(codec, presets, layers, 128, 1, k.data(), v.data());
  ASSERT_EQ(s.error.size(), std::size_t(layers));
  for (int l = 0; l < layers; ++l) {
    const auto& e = s.error[std::size_t(l)];
    // More bits, less error, on every real tile.
    EXPECT_GT(e[0], 0) << names[std::size_t(l)];
    EXPECT_LT(e[0], e[1]) << names[std::size_t(l)];
    EXPECT_LT(e[1], e[2]) << names[std::size_t(l)];
    // The same number from the scalar reference codec (quantize_tile / dequantize_tile), one tile.
    const std::size_t off = std::size_t(l) * 128 * kD;
    std::vector<half_bits> kr(128 * kD), vr(128 * kD);
    rotate_rows(k.data() + off, kr.data(), 128, kD);
    rotate_rows(v.data() + off, vr.data(), 128, kD);
    for (std::size_t i = 0; i < presets.size(); ++i) {
      CodecParams p = codec;
      p.preset = presets[i];
      std::vector<std::uint8_t> rec(RecordLayout::make(p).bytes);
      quantize_tile(p, kr.data(), vr.data(), rec.data());
      std::vector<float> ko(128 * kD), vo(128 * kD);
      dequantize_tile(p, rec.data(), ko.data(), vo.data(), Frame::rotated);
      auto rel2 = [](const std::vector<float>& got, const std::vector<half_bits>& want) {
        double n = 0, d = 0;
        for (std::size_t j = 0; j < want.size(); ++j) {
          const double w = half_to_float(want[j]), g = half_to_float(float_to_half(got[j]));
          n += (g - w) * (g - w);
          d += w * w;
        }
        return n / d;
      };
      EXPECT_NEAR(e[i], rel2(ko, kr) + rel2(vo, vr), 1e-3 * e[i])
          << names[std::size_t(l)] << " " << to_string(presets[i]);
    }
  }
  std::printf("proxy sensitivity (k4v4, k4v2, k2v2):\n");
  for (int l = 0; l < layers; ++l)
    std::printf("  %s %.3e %.3e %.3e\n", names[std::size_t(l)].c_str(), s.error[std::size_t(l)][0],
                s.error[std::size_t(l)][1], s.error[std::size_t(l)][2]);
}

TEST(LayerSensitivityMeasure, BadInputIsNamed) {
  CodecParams codec;
  codec.head_dim = kD;
  std::vector<float> k(2 * 128 * 2 * kD, 0.5f), v = k;
  const std::vector<Preset> p = {Preset::k4v2_g128, Preset::k4v4_g128};
  EXPECT_NE(invalid_argument_message([&] {
              measure_layer_sensitivity(codec, p, 2, 100, 2, k.data(), v.data());
            }).find("tokens 100"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message([&] {
              measure_layer_sensitivity(codec, p, 0, 128, 2, k.data(), v.data());
            }).find("num_layers 0"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message([&] {
              measure_layer_sensitivity(codec, p, 2, 128, 2, nullptr, v.data());
            }).find("k is null"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message([&] {
              measure_layer_sensitivity(codec, {}, 2, 128, 2, k.data(), v.data());
            }).find("presets is empty"),
            std::string::npos);
  v[std::size_t(128 * 2 * kD + 5 * 2 * kD + kD + 3)] =
      std::numeric_limits<float>::quiet_NaN();  // layer 1, token 5, head 1
  try {
    measure_layer_sensitivity(codec, p, 2, 128, 2, k.data(), v.data());
    ADD_FAILURE() << "no NonFiniteInput";
  } catch (const NonFiniteInput& e) {
    EXPECT_NE(std::string(e.what()).find("v of layer 1, token 5, head 1"), std::string::npos)
        << e.what();
  }
}

TEST(LayerPlan, KVCacheTakesThePlan) {
  const LayerPlan plan = choose_layer_presets(four_layers_layer2_most_sensitive(), kD, 61);
  CacheConfig cfg;
  cfg.codec.head_dim = kD;
  cfg.num_layers = 4;
  cfg.num_kv_heads = 2;
  cfg.max_tokens_per_sequence = 512;
  cfg.recent_tokens = 0;
  cfg.layer_presets = plan.presets;
  cfg.backend = make_cpu_backend();
  KVCache cache(cfg);
  const SeqId id = cache.add_sequence();
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.f, 1.f);
  std::vector<float> k(std::size_t(384) * 2 * kD), v(k.size());
  for (auto& x : k) x = n(rng);
  for (auto& x : v) x = n(rng);
  for (int l = 0; l < 4; ++l) {
    cache.append(l, {id}, {384}, k.data(), v.data());
    EXPECT_EQ(cache.layout(l).bytes,
              std::size_t(preset_bytes_per_token_head(plan.presets[std::size_t(l)], kD) * 128));
    EXPECT_EQ(cache.quantized_tiles(id, l), 2);  // sink tile fp16, tiles 1 and 2 quantized
  }
  // The plan as a layer-preset file reads back the same.
  EXPECT_EQ(parse_layer_presets(format_layer_presets(plan.presets), "plan"), plan.presets);
}

}  // namespace
}  // namespace kvarn_cl
