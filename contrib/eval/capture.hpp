// Capture of real post-RoPE keys and values for the codec's unit tests (test/data), and a
// per-layer survey of outlier channels that tells which layers are worth capturing.
#pragma once

#include <string>
#include <vector>

#include "model.hpp"
#include "thread_pool.hpp"

namespace kvarn_eval {

struct CaptureRequest {
  std::string dir;          // where the .kv16 files go
  std::vector<int> layers;  // layers to save (all KV heads of tile `tile`)
  int tile = 1;             // which tile of the sequence (tile 0 is the sink)
};

// Runs `tokens` through the model with a k4v2_g128 cache, prints for every layer the ratio of the
// largest to the median per-channel RMS of the unrotated keys in the first quantized tile, and
// writes one file per requested (layer, KV head): G×D rotated fp16 keys then G×D rotated fp16
// values, token-major, little-endian (exactly what quantize_tile receives).
void capture_tiles(Model& model, ThreadPool& pool, const std::vector<std::int32_t>& tokens,
                   const CaptureRequest& request);

}  // namespace kvarn_eval
