// The C API of per-layer presets, layer-preset files and the recent-token window.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/test_support.hpp"
#include "kvarn_cl/kvarn_cl.h"

namespace {

std::string last_error() { return kvarn_cl_last_error(); }

TEST(CApiLayerPresets, FileToCacheAndRecentWindow) {
  const std::string path = ::testing::TempDir() + "capi_layer_presets.txt";
  {
    std::ofstream f(path);
    f << "# plan\n0 k4v4_g128\n1 k4v2_g128\n2 k2v2_g128\n";
  }
  size_t count = 0;
  ASSERT_EQ(kvarn_cl_layer_presets_read(path.c_str(), nullptr, 0, &count),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_EQ(count, 3u);
  kvarn_cl_preset presets[3];
  ASSERT_EQ(kvarn_cl_layer_presets_read(path.c_str(), presets, 3, &count), KVARN_CL_OK)
      << last_error();
  EXPECT_EQ(presets[0], KVARN_CL_K4V4_G128);
  EXPECT_EQ(presets[2], KVARN_CL_K2V2_G128);
  std::remove(path.c_str());
  EXPECT_EQ(kvarn_cl_layer_presets_read(path.c_str(), presets, 3, &count), KVARN_CL_IO_ERROR);
  EXPECT_NE(last_error().find(path), std::string::npos) << last_error();

  kvarn_cl_backend* be = nullptr;
  ASSERT_EQ(kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 1, &be), KVARN_CL_OK);
  kvarn_cl_cache_config cfg;
  kvarn_cl_cache_config_init(&cfg);
  EXPECT_EQ(cfg.layer_presets, nullptr);
  EXPECT_EQ(cfg.recent_tokens, 128);  // the library default (kvarn_cl::kDefaultRecentTokens)
  cfg.head_dim = 64;
  cfg.num_layers = 3;
  cfg.num_kv_heads = 1;
  cfg.max_tokens_per_sequence = 1024;
  cfg.layer_presets = presets;
  cfg.recent_tokens = 128;
  kvarn_cl_cache* cache = nullptr;
  ASSERT_EQ(kvarn_cl_cache_create(be, &cfg, &cache), KVARN_CL_OK) << last_error();
  kvarn_cl_preset p;
  size_t bytes = 0, bytes0 = 0;
  ASSERT_EQ(kvarn_cl_cache_layer_preset(cache, 1, &p, &bytes), KVARN_CL_OK);
  EXPECT_EQ(p, KVARN_CL_K4V2_G128);
  ASSERT_EQ(kvarn_cl_record_bytes(KVARN_CL_K4V2_G128, 64, &bytes0), KVARN_CL_OK);
  EXPECT_EQ(bytes, bytes0);
  EXPECT_EQ(kvarn_cl_cache_layer_preset(cache, 3, &p, &bytes), KVARN_CL_INVALID_ARGUMENT);

  uint64_t seq = 0;
  ASSERT_EQ(kvarn_cl_cache_add_sequence(cache, &seq), KVARN_CL_OK);
  const int T = 600;
  const auto k = kvarn_cl::test::gaussian_rows(T, 64, 1),
             v = kvarn_cl::test::gaussian_rows(T, 64, 2);
  for (int l = 0; l < 3; ++l)
    ASSERT_EQ(kvarn_cl_cache_append(cache, l, 1, &seq, &T, k.data(), v.data(), KVARN_CL_F32, 0),
              KVARN_CL_OK)
        << last_error();
  kvarn_cl_memory_report r;
  ASSERT_EQ(kvarn_cl_cache_memory_report(cache, &r), KVARN_CL_OK);
  // 600 tokens: sink 128, 2 tiles quantized ((600-128-128)/128), 1 more held back by the window.
  EXPECT_EQ(r.exact_recent_tokens, 3u * 128);
  size_t in_use = 0;
  for (int l = 0; l < 3; ++l) {
    ASSERT_EQ(kvarn_cl_cache_layer_preset(cache, l, nullptr, &bytes), KVARN_CL_OK);
    in_use += 2 * bytes;
  }
  EXPECT_EQ(r.records_in_use, in_use);
  kvarn_cl_cache_destroy(cache);

  kvarn_cl_preset mixed_g[3] = {KVARN_CL_K4V2_G128, KVARN_CL_K4V2_G64, KVARN_CL_K4V2_G128};
  cfg.layer_presets = mixed_g;
  EXPECT_EQ(kvarn_cl_cache_create(be, &cfg, &cache), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("tile size"), std::string::npos) << last_error();
  kvarn_cl_preset bad[3] = {KVARN_CL_K4V2_G128, static_cast<kvarn_cl_preset>(17),
                            KVARN_CL_K4V2_G128};
  cfg.layer_presets = bad;
  EXPECT_EQ(kvarn_cl_cache_create(be, &cfg, &cache), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("17"), std::string::npos) << last_error();
  kvarn_cl_backend_destroy(be);
}

}  // namespace
