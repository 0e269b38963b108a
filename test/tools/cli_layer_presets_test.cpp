// kvarn-cl attend with --layer-presets / --layer / --recent-tokens: the output is what a KVCache
// built the same way computes, and bad combinations are usage errors naming the option.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cli_runner.hpp"
#include "common/test_support.hpp"
#include "kvarn_cl/kvarn_cl.hpp"

using namespace kvarn_cl;
using kvarn_cl::test::CliResult;
using kvarn_cl::test::CliSandbox;

namespace {

std::vector<float> read_f32(const CliSandbox& box, const std::string& name) {
  const auto bytes = box.read_bytes(name);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);  // little-endian host
  return out;
}

TEST(CliLayerPresets, AttendUsesTheLayersPresetAndTheWindow) {
  const int D = 64, Hk = 2, Hq = 4, T = 600, layer = 1, R = 128;
  const auto k = test::to_half(test::gaussian_rows(std::size_t(T) * Hk, D, 5, {3}, 8.0f));
  const auto v = test::to_half(test::gaussian_rows(std::size_t(T) * Hk, D, 6));
  const auto q = test::to_half(test::gaussian_rows(Hq, D, 7));
  CliSandbox box;
  box.write_halves("k.f16", k);
  box.write_halves("v.f16", v);
  box.write_halves("q.f16", q);
  {
    const std::string plan = "# test plan\n0 k4v4_g128\n1 k2v2_g128\n2 k4v2_g128\n";
    box.write_bytes("plan.txt", std::vector<std::uint8_t>(plan.begin(), plan.end()));
  }
  const std::vector<std::string> common = {
      "attend", "--head-dim", "64",    "--q-heads", "4",     "--kv-heads",
      "2",      "--q",        "q.f16", "--k",       "k.f16", "--v",
      "v.f16",  "--out",      "o.f32", "--backend", "cpu"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return box.run(a);
  };
  const CliResult r =
      with({"--layer-presets", "plan.txt", "--layer", "1", "--recent-tokens", "128"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // (600 - 128 sink - 128 recent) / 128 = 2 tiles of layer 1's preset.
  EXPECT_NE(r.out.find("2 tiles of k2v2_g128"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("128 recent kept exact"), std::string::npos) << r.out;
  const auto got = read_f32(box, "o.f32");

  CacheConfig cfg;
  cfg.codec.head_dim = D;
  cfg.layer_presets = {Preset::k4v4_g128, Preset::k2v2_g128, Preset::k4v2_g128};
  cfg.num_layers = 3;
  cfg.num_kv_heads = Hk;
  cfg.max_tokens_per_sequence = T;
  cfg.recent_tokens = R;
  cfg.backend = make_cpu_backend();
  KVCache cache(cfg);
  const SeqId id = cache.add_sequence();
  cache.append(layer, {id}, {T}, k.data(), v.data());
  const auto qf = test::to_float(q);
  std::vector<float> want(qf.size());
  cache.attend(layer, {id}, Hq, qf.data(), want.data(), 1.0f / std::sqrt(float(D)));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LT(relative_error(got, want), 1e-6);

  const CliResult both = with({"--layer-presets", "plan.txt", "--preset", "k4v2_g128"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("not both"), std::string::npos) << both.err;
  const CliResult bad_layer = with({"--layer-presets", "plan.txt", "--layer", "3"});
  EXPECT_EQ(bad_layer.exit_code, 2);
  EXPECT_NE(bad_layer.err.find("--layer 3"), std::string::npos) << bad_layer.err;
  const CliResult bad_recent = with({"--preset", "k4v2_g128", "--recent-tokens", "-5"});
  EXPECT_EQ(bad_recent.exit_code, 2);
  EXPECT_NE(bad_recent.err.find("--recent-tokens -5"), std::string::npos) << bad_recent.err;
  {
    const std::string plan = "0 k4v2_g128\n1 k4v4_g64\n";
    box.write_bytes("mixed.txt", std::vector<std::uint8_t>(plan.begin(), plan.end()));
  }
  const CliResult mixed = with({"--layer-presets", "mixed.txt"});
  EXPECT_NE(mixed.exit_code, 0);
  EXPECT_NE(mixed.err.find("tile size"), std::string::npos) << mixed.err;
}

}  // namespace
