/* Compiled as C (C99): kvarn_cl.h must be valid C, and the basic calls must work from C. */
#include <stdio.h>
#include <string.h>

#include "kvarn_cl/kvarn_cl.h"

static int fail(const char* what) {
  fprintf(stderr, "c_header_check: %s: %s\n", what, kvarn_cl_last_error());
  return 1;
}

int main(void) {
  kvarn_cl_preset preset;
  size_t bytes = 0;
  kvarn_cl_backend* backend = NULL;
  kvarn_cl_cache* cache = NULL;
  kvarn_cl_cache_config config;
  kvarn_cl_memory_report report;
  uint64_t seq = 0;
  float k[2 * 64], v[2 * 64], q[4 * 64], out[4 * 64];
  int tokens = 2, i;

  if (strlen(kvarn_cl_version()) == 0) return fail("version");
  if (kvarn_cl_preset_parse("k4v2_g128", &preset) != KVARN_CL_OK) return fail("preset_parse");
  if (kvarn_cl_record_bytes(preset, 128, &bytes) != KVARN_CL_OK || bytes != 13824)
    return fail("record_bytes");
  if (kvarn_cl_preset_parse("nope", &preset) != KVARN_CL_INVALID_ARGUMENT)
    return fail("bad preset accepted");
  if (strstr(kvarn_cl_last_error(), "nope") == NULL) return fail("error message");

  if (kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 1, &backend) != KVARN_CL_OK)
    return fail("backend");
  kvarn_cl_cache_config_init(&config);
  config.head_dim = 64;
  config.num_kv_heads = 1;
  config.max_tokens_per_sequence = 256;
  if (kvarn_cl_cache_create(backend, &config, &cache) != KVARN_CL_OK) return fail("cache_create");
  if (kvarn_cl_cache_add_sequence(cache, &seq) != KVARN_CL_OK) return fail("add_sequence");
  for (i = 0; i < 2 * 64; ++i) {
    k[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    v[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
  }
  for (i = 0; i < 4 * 64; ++i) q[i] = (float)(i % 3) - 1.0f;
  if (kvarn_cl_cache_append(cache, 0, 1, &seq, &tokens, k, v, KVARN_CL_F32, 0) != KVARN_CL_OK)
    return fail("append");
  if (kvarn_cl_cache_attend(cache, 0, 1, &seq, 4, q, out, KVARN_CL_F32, 0.0f,
                            KVARN_CL_ATTEND_FUSED) != KVARN_CL_OK)
    return fail("attend");
  if (kvarn_cl_cache_memory_report(cache, &report) != KVARN_CL_OK || report.total == 0)
    return fail("memory_report");
  kvarn_cl_cache_destroy(cache);
  kvarn_cl_backend_destroy(backend);
  printf("c_header_check: ok (%s)\n", kvarn_cl_version());
  return 0;
}
