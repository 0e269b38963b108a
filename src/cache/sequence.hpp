// The host state of one sequence of a KVCache. Its K/V bytes live on the backend: one slot of the
// fp16 sink and tail pools, and the record blocks listed in `blocks`.
#pragma once

#include <cstdint>
#include <vector>

#include "kvarn_cl/cache.hpp"

namespace kvarn_cl::cache {

struct Sequence {
  SeqId id = 0;
  int slot = 0;                      // row of the sequence in every layer's sink and tail pools
  std::vector<std::int32_t> blocks;  // shared by all layers: block j holds tile j
  std::vector<int> length;           // tokens per layer, uncommitted included
  std::vector<int> committed;        // committed tokens per layer
};

}  // namespace kvarn_cl::cache
