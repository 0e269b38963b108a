// Shared helpers of the cache tests: the backends to run on (the CPU always, OpenCL when a device
// is usable), seeded K/V/q data, and the fp32 reference built from a cache's own bytes.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/test_support.hpp"
#include "kvarn_cl/kvarn_cl.hpp"

namespace kvarn_cl::test {

struct NamedBackend {
  std::string label;
  std::shared_ptr<Backend> backend;
};

// cpu (2 threads) always; opencl too when make_opencl_backend() finds a usable device.
const std::vector<NamedBackend>& cache_test_backends();

// recent_tokens 0: tiles are quantized as soon as they are complete.
CacheConfig small_config(std::shared_ptr<Backend> backend, Preset preset, int head_dim, int layers,
                         int kv_heads, int max_seqs, int max_tokens);

// Token rows [T][Hk][D] of N(0,1) values, a few channels scaled ×8 (outliers).
std::vector<float> kv_rows(int tokens, int kv_heads, int head_dim, std::uint32_t seed);

// Exact fp32 attention over the cache's own content of one sequence (records decoded by the CPU
// codec in fp32, sink and tail fp16 widened), computed in the rotated frame and rotated back.
std::vector<float> reference_attention(KVCache& cache, SeqId id, int layer, int num_q_heads,
                                       const float* q, float scale);

// Exact fp32 attention over the original (unquantized) fp32 rows [T][Hk][D] of one sequence.
std::vector<float> exact_over_rows(const std::vector<float>& k, const std::vector<float>& v,
                                   int tokens, int kv_heads, int head_dim, int num_q_heads,
                                   const float* q, float scale);

// Runs f and expects an exception of type E whose message contains `needle`.
template <typename E>
void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

}  // namespace kvarn_cl::test
