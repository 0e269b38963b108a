/* Compiled as C (C99): what a careless C caller can pass. Enum parameters and fields hold any int
 * in C; flags that are not 0/1; tile counts whose byte sizes overflow size_t; batch sizes beyond
 * the cache. Each must give KVARN_CL_INVALID_ARGUMENT (not undefined behaviour, not "out of
 * memory", not a silent reinterpretation) and leave the cache unchanged. The sanitizer CI build
 * (UBSan -fsanitize=enum) fails this test if the library reads an out-of-range enum. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "kvarn_cl/kvarn_cl.h"

static int failures = 0;

static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "c_robustness_check: %s (last error: %s)\n", what, kvarn_cl_last_error());
    ++failures;
  }
}

static void expect_invalid(kvarn_cl_status s, const char* what, const char* mention) {
  expect(s == KVARN_CL_INVALID_ARGUMENT, what);
  if (mention != NULL) expect(strstr(kvarn_cl_last_error(), mention) != NULL, what);
}

int main(void) {
  const int bad_values[] = {-1, 5, 7, 99, 1 << 30};
  kvarn_cl_backend* backend = NULL;
  kvarn_cl_cache* cache = NULL;
  kvarn_cl_cache_config config;
  uint64_t seq = 0;
  float k[2 * 64], v[2 * 64], q[4 * 64], out[4 * 64];
  static uint8_t records[16];
  int tokens = 2, length = -1, group = 0;
  size_t bytes = 0, i;

  for (i = 0; i < 2 * 64; ++i) k[i] = v[i] = 0.25f;
  for (i = 0; i < 4 * 64; ++i) q[i] = 0.5f;
  if (kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 1, &backend) != KVARN_CL_OK) {
    fprintf(stderr, "c_robustness_check: backend: %s\n", kvarn_cl_last_error());
    return 1;
  }
  for (i = 0; i < sizeof bad_values / sizeof bad_values[0]; ++i) {
    const int b = bad_values[i];
    kvarn_cl_backend* other = NULL;
    expect_invalid(kvarn_cl_record_bytes((kvarn_cl_preset)b, 128, &bytes),
                   "record_bytes: bad preset", "preset");
    expect_invalid(kvarn_cl_preset_group((kvarn_cl_preset)b, &group), "preset_group: bad preset",
                   "preset");
    expect(kvarn_cl_preset_name((kvarn_cl_preset)b) == NULL, "preset_name: bad preset gives NULL");
    expect(kvarn_cl_status_name((kvarn_cl_status)(b + 10)) != NULL,
           "status_name: unknown status has a name");
    if (b > 2 || b < 0) {
      expect_invalid(kvarn_cl_backend_create((kvarn_cl_backend_kind)b, 1, &other),
                     "backend_create: bad kind", "backend kind");
      expect(other == NULL, "backend_create: no backend on error");
    }
    expect_invalid(kvarn_cl_dequantize_tiles(backend, KVARN_CL_K4V2_G128, 128, 1, records,
                                             (kvarn_cl_frame)b, KVARN_CL_F16, k, v),
                   "dequantize_tiles: bad frame", "frame");
    expect_invalid(
        kvarn_cl_dequantize_tiles(backend, KVARN_CL_K4V2_G128, 128, 1, records,
                                  KVARN_CL_FRAME_ROTATED, (kvarn_cl_element_type)b, k, v),
        "dequantize_tiles: bad out_type", "out_type");
  }

  /* Byte counts that overflow size_t are invalid sizes, not an out-of-memory condition. */
  expect_invalid(kvarn_cl_dequantize_tiles(backend, KVARN_CL_K4V2_G128, 128, SIZE_MAX / 2, records,
                                           KVARN_CL_FRAME_ROTATED, KVARN_CL_F16, k, v),
                 "dequantize_tiles: SIZE_MAX/2 tiles", "tiles");
  expect_invalid(kvarn_cl_dequantize_tiles(backend, KVARN_CL_K4V2_G128, 128, SIZE_MAX / 13824 + 1,
                                           records, KVARN_CL_FRAME_ROTATED, KVARN_CL_F32, k, v),
                 "dequantize_tiles: record bytes overflow", "tiles");
  expect_invalid(kvarn_cl_quantize_tiles(backend, KVARN_CL_K4V2_G128, 128, 8, SIZE_MAX / 2, k, v,
                                         KVARN_CL_F32, records),
                 "quantize_tiles: SIZE_MAX/2 tiles", "tiles");

  kvarn_cl_cache_config_init(&config);
  config.head_dim = 64;
  config.num_kv_heads = 1;
  config.max_tokens_per_sequence = 256;
  config.preset = (kvarn_cl_preset)42;
  expect_invalid(kvarn_cl_cache_create(backend, &config, &cache), "cache_create: bad preset field",
                 "preset");
  config.preset = KVARN_CL_K4V2_G64;
  if (kvarn_cl_cache_create(backend, &config, &cache) != KVARN_CL_OK ||
      kvarn_cl_cache_add_sequence(cache, &seq) != KVARN_CL_OK) {
    fprintf(stderr, "c_robustness_check: cache: %s\n", kvarn_cl_last_error());
    return 1;
  }
  /* speculative must be 0 or 1: -7 used to be taken as "true". */
  expect_invalid(kvarn_cl_cache_append(cache, 0, 1, &seq, &tokens, k, v, KVARN_CL_F32, -7),
                 "append: speculative -7", "speculative -7");
  expect_invalid(kvarn_cl_cache_append(cache, 0, 1, &seq, &tokens, k, v, KVARN_CL_F32, 2),
                 "append: speculative 2", "speculative 2");
  expect_invalid(
      kvarn_cl_cache_append(cache, 0, 1, &seq, &tokens, k, v, (kvarn_cl_element_type)3, 0),
      "append: bad elem_type", "elem_type");
  expect_invalid(kvarn_cl_cache_append(cache, 0, SIZE_MAX, &seq, &tokens, k, v, KVARN_CL_F32, 0),
                 "append: num_seqs SIZE_MAX", "num_seqs");
  expect(kvarn_cl_cache_length(cache, seq, 0, &length) == KVARN_CL_OK && length == 0,
         "refused appends leave the cache empty");
  expect(kvarn_cl_cache_append(cache, 0, 1, &seq, &tokens, k, v, KVARN_CL_F32, 1) == KVARN_CL_OK,
         "append: speculative 1");
  expect_invalid(kvarn_cl_cache_attend(cache, 0, 1, &seq, 4, q, out, KVARN_CL_F32, 0.0f,
                                       (kvarn_cl_attend_path)9),
                 "attend: bad path", "attend path");
  expect_invalid(kvarn_cl_cache_attend(cache, 0, 1, &seq, 4, q, out, (kvarn_cl_element_type)-1,
                                       0.0f, KVARN_CL_ATTEND_FUSED),
                 "attend: bad out_type", "out_type");
  expect(kvarn_cl_cache_attend(cache, 0, 1, &seq, 4, q, out, KVARN_CL_F32, 0.0f,
                               KVARN_CL_ATTEND_FUSED) == KVARN_CL_OK,
         "attend");
  kvarn_cl_cache_destroy(cache);
  kvarn_cl_backend_destroy(backend);
  if (failures) return 1;
  printf("c_robustness_check: ok\n");
  return 0;
}
