// The simulated KV cache of one sequence for every layer, in one of the KvConfig modes.
//
// Two views of each cached position are kept (fp32, original frame, [pos][kv_head][head_dim]):
//   exact     - what an fp16 region of the cache returns: fp16 rows (rotated for KVarN, rounded
//               in the rotated frame and rotated back for attention);
//   quantized - the round trip through the cache's quantizer.
// A query at position t reads positions < boundary(layer, t) from the quantized view and the rest
// from the exact view. For KVarN (SPEC §3) the first tile is the fp16 sink, a tile is quantized
// once its G tokens are all appended and (with a recent window of R) R more tokens follow it
// (append-then-attend, so the token completing a tile already sees it quantized), and the
// still-filling tail is fp16. Each layer uses its own preset (KvConfig::codec_for). llama.cpp
// caches quantize every row on store, with K blocks over llama.cpp's permuted channel order and
// the query rounded to q8_0 (transform_query) as its CPU flash attention computes scores.
// Keys arrive after rotary embedding, as vLLM caches them.
//
// A config with library_cache set holds a real kvarn_cl::KVCache on the given backend instead;
// then attention goes through KVCache::attend (one query token per step) and the two views above
// are not used.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kv_config.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_eval {

// Called for every tile the store quantizes, with its G token-major fp16 rows of K and V exactly
// as the codec received them (rotated for KVarN).
using TileObserver = std::function<void(int layer, int kv_head, int tile,
                                        const kvarn_cl::half_bits* k, const kvarn_cl::half_bits* v)>;

class KvStore {
 public:
  KvStore(const KvConfig& config, int layers, int kv_heads, int head_dim, int capacity,
          std::shared_ptr<kvarn_cl::Backend> backend = nullptr);

  bool library() const { return cache_ != nullptr; }
  // library(): attention of the one query token just appended to `layer`: q [Hq][D] -> out [Hq][D].
  void library_attend(int layer, int num_q_heads, const float* q, float* out);

  const KvConfig& config() const { return config_; }
  int length() const { return length_; }
  // Appends T positions starting at pos0 == length() for one layer; k and v are T×kv_heads×D.
  // Call for every layer, then commit(T) once.
  void append(int layer, int pos0, int T, const float* k, const float* v);
  void commit(int T) { length_ += T; }

  int boundary(int layer, int t) const;
  // Whether queries must go through transform_query before the scores (llama.cpp's q8_0 query).
  bool transforms_query() const { return config_.kind == KvKind::ggml && config_.q8_query; }
  // One query head row of D values (Hugging Face channel order) -> what llama.cpp's dot product
  // sees, expressed in the same frame as quant_k (so q·k over the views equals llama.cpp's score).
  void transform_query(const float* q, float* out) const;
  const float* exact_k(int layer) const { return layers_[std::size_t(layer)].exact_k.data(); }
  const float* exact_v(int layer) const { return layers_[std::size_t(layer)].exact_v.data(); }
  const float* quant_k(int layer) const;
  const float* quant_v(int layer) const;

  void set_tile_observer(TileObserver obs) { observer_ = std::move(obs); }
  std::size_t tiles_quantized() const { return tiles_quantized_; }

 private:
  struct Layer {
    std::vector<float> exact_k, exact_v, quant_k, quant_v;
    std::vector<kvarn_cl::half_bits> rows_k, rows_v;  // tiled modes: fp16 rows as the codec sees them
  };
  void quantize_tile(int layer, int tile);

  KvConfig config_;
  int kv_heads_, head_dim_, capacity_;
  int length_ = 0;
  std::vector<Layer> layers_;
  TileObserver observer_;
  std::unique_ptr<kvarn_cl::KVCache> cache_;
  kvarn_cl::SeqId seq_ = 0;
  std::size_t tiles_quantized_ = 0;
};

}  // namespace kvarn_eval
