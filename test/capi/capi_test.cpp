// The C API from C++: every function's success path, and error paths returning the right status
// with a message that names the argument (exceptions never cross the C edge).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/test_support.hpp"
#include "kvarn_cl/kvarn_cl.h"
#include "kvarn_cl/kvarn_cl.hpp"

namespace {

using kvarn_cl::test::gaussian_rows;

std::string last_error() { return kvarn_cl_last_error(); }

TEST(CApi, StatusValuesMatchTheCppEnum) {
  EXPECT_EQ(int(KVARN_CL_INVALID_ARGUMENT), int(kvarn_cl::Status::invalid_argument));
  EXPECT_EQ(int(KVARN_CL_NON_FINITE_INPUT), int(kvarn_cl::Status::non_finite_input));
  EXPECT_EQ(int(KVARN_CL_OUT_OF_MEMORY), int(kvarn_cl::Status::out_of_memory));
  EXPECT_EQ(int(KVARN_CL_INTERNAL), int(kvarn_cl::Status::internal));
  EXPECT_STREQ(kvarn_cl_status_name(KVARN_CL_UNSUPPORTED), "unsupported");
  EXPECT_STREQ(kvarn_cl_version(), kvarn_cl::version());
  EXPECT_GT(std::strlen(kvarn_cl_version()), 0u);
}

TEST(CApi, PresetsAndRecordSizes) {
  kvarn_cl_preset p;
  ASSERT_EQ(kvarn_cl_preset_parse("k4v4_g64", &p), KVARN_CL_OK);
  EXPECT_EQ(p, KVARN_CL_K4V4_G64);
  EXPECT_STREQ(kvarn_cl_preset_name(KVARN_CL_K2V2_G128), "k2v2_g128");
  EXPECT_EQ(kvarn_cl_preset_name(static_cast<kvarn_cl_preset>(17)), nullptr);
  EXPECT_EQ(kvarn_cl_preset_parse("k3v3", &p), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'k3v3'"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_preset_parse(nullptr, &p), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("name is NULL"), std::string::npos) << last_error();
  size_t bytes = 0;
  ASSERT_EQ(kvarn_cl_record_bytes(KVARN_CL_K4V2_G128, 128, &bytes), KVARN_CL_OK);
  EXPECT_EQ(bytes, 13824u);
  ASSERT_EQ(kvarn_cl_record_bytes(KVARN_CL_K4V2_G64, 128, &bytes), KVARN_CL_OK);
  EXPECT_EQ(bytes, 7296u);
  EXPECT_EQ(kvarn_cl_record_bytes(KVARN_CL_K4V2_G128, 100, &bytes), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("100"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_record_bytes(static_cast<kvarn_cl_preset>(-1), 128, &bytes),
            KVARN_CL_INVALID_ARGUMENT);
  int g = 0;
  ASSERT_EQ(kvarn_cl_preset_group(KVARN_CL_K4V4_G64, &g), KVARN_CL_OK);
  EXPECT_EQ(g, 64);
  EXPECT_EQ(last_error(), "");  // success clears the message
}

TEST(CApi, QuantizeAndDequantizeTilesMatchTheCppCodec) {
  kvarn_cl_backend* be = nullptr;
  ASSERT_EQ(kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 2, &be), KVARN_CL_OK);
  EXPECT_NE(std::string(kvarn_cl_backend_name(be)).find("cpu"), std::string::npos);
  kvarn_cl_backend_kind kind = KVARN_CL_BACKEND_AUTOMATIC;
  ASSERT_EQ(kvarn_cl_backend_get_kind(be, &kind), KVARN_CL_OK);
  EXPECT_EQ(kind, KVARN_CL_BACKEND_CPU);
  EXPECT_EQ(kvarn_cl_backend_get_kind(be, nullptr), KVARN_CL_INVALID_ARGUMENT);
  const int D = 64, G = 64, tiles = 3;
  const auto k = gaussian_rows(std::size_t(tiles) * G, D, 1, {5}),
             v = gaussian_rows(std::size_t(tiles) * G, D, 2);
  size_t rb = 0;
  ASSERT_EQ(kvarn_cl_record_bytes(KVARN_CL_K4V2_G64, D, &rb), KVARN_CL_OK);
  std::vector<uint8_t> rec(tiles * rb);
  ASSERT_EQ(kvarn_cl_quantize_tiles(be, KVARN_CL_K4V2_G64, D, 8, tiles, k.data(), v.data(),
                                    KVARN_CL_F32, rec.data()),
            KVARN_CL_OK)
      << last_error();
  // The same through the C++ codec.
  kvarn_cl::CodecParams p;
  p.preset = kvarn_cl::Preset::k4v2_g64;
  p.head_dim = D;
  std::vector<kvarn_cl::half_bits> kr(k.size()), vr(v.size());
  kvarn_cl::rotate_rows(k.data(), kr.data(), k.size() / D, D);
  kvarn_cl::rotate_rows(v.data(), vr.data(), v.size() / D, D);
  std::vector<uint8_t> expect(tiles * rb);
  kvarn_cl::quantize_tiles(p, kr.data(), vr.data(), tiles, expect.data());
  EXPECT_TRUE(rec == expect);

  std::vector<float> ko(k.size()), vo(v.size());
  ASSERT_EQ(kvarn_cl_dequantize_tiles(be, KVARN_CL_K4V2_G64, D, tiles, rec.data(),
                                      KVARN_CL_FRAME_ORIGINAL, KVARN_CL_F32, ko.data(), vo.data()),
            KVARN_CL_OK);
  EXPECT_LT(kvarn_cl::relative_error(ko, k), 0.2);
  std::vector<uint16_t> kh(k.size()), vh(v.size());
  ASSERT_EQ(kvarn_cl_dequantize_tiles(be, KVARN_CL_K4V2_G64, D, tiles, rec.data(),
                                      KVARN_CL_FRAME_ORIGINAL, KVARN_CL_F16, kh.data(), vh.data()),
            KVARN_CL_OK);
  EXPECT_EQ(kvarn_cl::test::to_float(kh), ko);

  // Error paths.
  auto bad = k;
  bad[70] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(kvarn_cl_quantize_tiles(be, KVARN_CL_K4V2_G64, D, 8, tiles, bad.data(), v.data(),
                                    KVARN_CL_F32, rec.data()),
            KVARN_CL_NON_FINITE_INPUT);
  EXPECT_NE(last_error().find("non-finite"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_quantize_tiles(be, KVARN_CL_K4V2_G64, D, 99, tiles, k.data(), v.data(),
                                    KVARN_CL_F32, rec.data()),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("sinkhorn_iters 99"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_quantize_tiles(be, KVARN_CL_K4V2_G64, D, 8, tiles, k.data(), v.data(),
                                    static_cast<kvarn_cl_element_type>(7), rec.data()),
            KVARN_CL_INVALID_ARGUMENT);
  // A record whose scale is Inf.
  std::vector<uint8_t> corrupt = rec;
  const kvarn_cl::RecordLayout L = kvarn_cl::RecordLayout::make(p);
  corrupt[L.s_col_k] = 0x00;
  corrupt[L.s_col_k + 1] = 0x7C;
  EXPECT_EQ(kvarn_cl_dequantize_tiles(be, KVARN_CL_K4V2_G64, D, 1, corrupt.data(),
                                      KVARN_CL_FRAME_ROTATED, KVARN_CL_F32, ko.data(), vo.data()),
            KVARN_CL_CORRUPT_RECORD);
  EXPECT_NE(last_error().find("s_col_K[0]"), std::string::npos) << last_error();
  kvarn_cl_backend* other = be;  // a failed create sets its output to NULL
  EXPECT_EQ(kvarn_cl_backend_create(static_cast<kvarn_cl_backend_kind>(9), 0, &other),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_EQ(other, nullptr);
  // cpu_threads belong to the CPU backend (make_backend's rule, as in C++ and Python)
  EXPECT_EQ(kvarn_cl_backend_create(KVARN_CL_BACKEND_OPENCL, 2, &other), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("cpu_threads 2"), std::string::npos) << last_error();
  kvarn_cl_backend_destroy(
      be);  // (this test used to overwrite `be` and leak it; LeakSanitizer saw it)
}

TEST(CApi, CacheLifecycle) {
  kvarn_cl_backend* be = nullptr;
  ASSERT_EQ(kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 2, &be), KVARN_CL_OK);
  kvarn_cl_cache_config cfg;
  kvarn_cl_cache_config_init(&cfg);
  EXPECT_EQ(cfg.max_uncommitted, 64);
  cfg.preset = KVARN_CL_K4V2_G64;
  cfg.head_dim = 64;
  cfg.num_layers = 2;
  cfg.num_kv_heads = 2;
  cfg.max_sequences = 2;
  cfg.max_tokens_per_sequence = 512;
  kvarn_cl_cache* cache = nullptr;
  ASSERT_EQ(kvarn_cl_cache_create(be, &cfg, &cache), KVARN_CL_OK) << last_error();

  uint64_t a = 0, b = 0;
  ASSERT_EQ(kvarn_cl_cache_add_sequence(cache, &a), KVARN_CL_OK);
  ASSERT_EQ(kvarn_cl_cache_add_sequence(cache, &b), KVARN_CL_OK);
  uint64_t c = 0;
  EXPECT_EQ(kvarn_cl_cache_add_sequence(cache, &c), KVARN_CL_OUT_OF_MEMORY);
  EXPECT_NE(last_error().find("max_sequences"), std::string::npos) << last_error();

  const int D = 64, Hk = 2, Hq = 8;
  const auto k = gaussian_rows(300 * Hk, D, 3), v = gaussian_rows(300 * Hk, D, 4);
  const uint64_t ids[2] = {a, b};
  const int tokens[2] = {200, 100};
  for (int layer = 0; layer < 2; ++layer)
    ASSERT_EQ(
        kvarn_cl_cache_append(cache, layer, 2, ids, tokens, k.data(), v.data(), KVARN_CL_F32, 0),
        KVARN_CL_OK)
        << last_error();
  int len = 0;
  ASSERT_EQ(kvarn_cl_cache_length(cache, b, 1, &len), KVARN_CL_OK);
  EXPECT_EQ(len, 100);
  // Speculative tokens: commit one, roll back the rest.
  const int two[1] = {2};
  for (int layer = 0; layer < 2; ++layer)
    ASSERT_EQ(kvarn_cl_cache_append(cache, layer, 1, &a, two, k.data(), v.data(), KVARN_CL_F32, 1),
              KVARN_CL_OK);
  ASSERT_EQ(kvarn_cl_cache_commit(cache, a, 1), KVARN_CL_OK);
  ASSERT_EQ(kvarn_cl_cache_rollback(cache, a), KVARN_CL_OK);
  ASSERT_EQ(kvarn_cl_cache_length(cache, a, 0, &len), KVARN_CL_OK);
  EXPECT_EQ(len, 201);

  const auto q = gaussian_rows(2 * Hq, D, 5);
  std::vector<float> fused(2 * Hq * D), mat(fused.size());
  ASSERT_EQ(kvarn_cl_cache_attend(cache, 1, 2, ids, Hq, q.data(), fused.data(), KVARN_CL_F32, 0.0f,
                                  KVARN_CL_ATTEND_FUSED),
            KVARN_CL_OK)
      << last_error();
  ASSERT_EQ(kvarn_cl_cache_attend(cache, 1, 2, ids, Hq, q.data(), mat.data(), KVARN_CL_F32, 0.0f,
                                  KVARN_CL_ATTEND_MATERIALIZE),
            KVARN_CL_OK)
      << last_error();
  EXPECT_LT(kvarn_cl::relative_error(mat, fused), 3e-3);

  kvarn_cl_memory_report r;
  ASSERT_EQ(kvarn_cl_cache_memory_report(cache, &r), KVARN_CL_OK);
  EXPECT_EQ(r.total, r.records + r.sink + r.tail + r.block_tables + r.seq_info + r.workspaces);
  EXPECT_EQ(r.live_tokens, 2u * (201 + 100));

  // Error paths.
  EXPECT_EQ(kvarn_cl_cache_attend(cache, 1, 2, ids, 3, q.data(), fused.data(), KVARN_CL_F32, 0.0f,
                                  KVARN_CL_ATTEND_FUSED),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("num_q_heads 3"), std::string::npos) << last_error();
  const int zero[1] = {0};
  EXPECT_EQ(kvarn_cl_cache_append(cache, 0, 1, &a, zero, k.data(), v.data(), KVARN_CL_F32, 0),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_EQ(kvarn_cl_cache_append(cache, 0, 1, &a, tokens, nullptr, v.data(), KVARN_CL_F32, 0),
            KVARN_CL_INVALID_ARGUMENT);
  EXPECT_EQ(kvarn_cl_cache_commit(cache, 12345, -1), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("unknown sequence id 12345"), std::string::npos) << last_error();
  EXPECT_EQ(kvarn_cl_cache_free_sequence(cache, a), KVARN_CL_OK);
  EXPECT_EQ(kvarn_cl_cache_rollback(cache, a), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_EQ(kvarn_cl_cache_add_sequence(cache, &c), KVARN_CL_OK);
  cfg.num_kv_heads = -2;
  kvarn_cl_cache* bad = nullptr;
  EXPECT_EQ(kvarn_cl_cache_create(be, &cfg, &bad), KVARN_CL_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("num_kv_heads -2"), std::string::npos) << last_error();
  EXPECT_EQ(bad, nullptr);
  EXPECT_EQ(kvarn_cl_cache_memory_report(nullptr, &r), KVARN_CL_INVALID_ARGUMENT);
  kvarn_cl_cache_destroy(cache);
  kvarn_cl_backend_destroy(be);
}

}  // namespace
