// Generated keys, values and queries with the structure real attention layers show, so that the demo
// exercises what KVarN is designed for: a few outlier channels of large magnitude and fixed sign
// (the reason for the Hadamard rotation), rotary position patterns on keys (channel pairs turning
// with the token position at geometric frequencies), per-token value scale variation, and queries
// that correlate with some keys (so attention is peaked, not uniform), and values that share a mean
// and a few directions per head (as real values do).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvarn_cl::cli {

struct SyntheticKv {
  int head_dim = 0;
  int kv_heads = 0;
  std::size_t tokens = 0;
  std::vector<float> k;  // [tokens][kv_heads][head_dim], original frame
  std::vector<float> v;  // same shape
};

// Deterministic for a given seed. position_offset shifts the rotary phase (for several sequences).
SyntheticKv synthetic_kv(std::size_t tokens, int kv_heads, int head_dim, std::uint32_t seed,
                         std::size_t position_offset = 0);

// Queries [q_heads][head_dim] for decode at position `position`: each query head leans toward the
// keys of a few earlier tokens of its KV head, plus noise.
std::vector<float> synthetic_queries(const SyntheticKv& kv, int q_heads, std::size_t position,
                                     std::uint32_t seed);

}  // namespace kvarn_cl::cli
