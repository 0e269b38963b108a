// CacheConfig (include/kvarn_cl/cache.hpp): the per-layer codec parameters and the checks of
// every field, run by the KVCache constructor before anything is derived from them.
#include "cache/error_message.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

CodecParams CacheConfig::layer_codec(int layer) const {
  CodecParams p = codec;
  if (!layer_presets.empty() && layer >= 0 && std::size_t(layer) < layer_presets.size())
    p.preset = layer_presets[std::size_t(layer)];
  return p;
}

void CacheConfig::validate() const {
  codec.validate();
  if (num_layers < 1)
    throw InvalidArgument(
        message("invalid CacheConfig::num_layers ", num_layers, ": must be >= 1"));
  if (num_kv_heads < 1)
    throw InvalidArgument(
        message("invalid CacheConfig::num_kv_heads ", num_kv_heads, ": must be >= 1"));
  if (max_sequences < 1)
    throw InvalidArgument(
        message("invalid CacheConfig::max_sequences ", max_sequences, ": must be >= 1"));
  if (max_tokens_per_sequence < 1)
    throw InvalidArgument(message("invalid CacheConfig::max_tokens_per_sequence ",
                                  max_tokens_per_sequence, ": must be >= 1"));
  if (pool_blocks < 0)
    throw InvalidArgument(message("invalid CacheConfig::pool_blocks ", pool_blocks,
                                  ": must be >= 0 (0 = automatic)"));
  if (sink_tokens < -1)
    throw InvalidArgument(message("invalid CacheConfig::sink_tokens ", sink_tokens,
                                  ": must be >= 0, or -1 for one tile"));
  if (!layer_presets.empty()) {
    if (layer_presets.size() != std::size_t(num_layers))
      throw InvalidArgument(message("invalid CacheConfig::layer_presets: ", layer_presets.size(),
                                    " presets for num_layers ", num_layers,
                                    " (one per layer, or none)"));
    for (std::size_t l = 1; l < layer_presets.size(); ++l)
      if (preset_info(layer_presets[l]).group != preset_info(layer_presets[0]).group)
        throw InvalidArgument(
            message("invalid CacheConfig::layer_presets[", l, "] ", to_string(layer_presets[l]),
                    ": tile size ", preset_info(layer_presets[l]).group, " differs from layer 0's ",
                    to_string(layer_presets[0]), " (", preset_info(layer_presets[0]).group,
                    "); all layers share one tile size"));
  }
  const int G = layer_codec(0).group();
  if (recent_tokens < 0 || recent_tokens > 65536)
    throw InvalidArgument(
        message("invalid CacheConfig::recent_tokens ", recent_tokens, ": must be in 0..65536"));
  if (max_uncommitted < 0 || max_uncommitted > G)
    throw InvalidArgument(message("invalid CacheConfig::max_uncommitted ", max_uncommitted,
                                  ": must be in 0..", G, " (the tile size of preset ",
                                  to_string(layer_codec(0).preset), ")"));
  if (!backend)
    throw InvalidArgument(
        "invalid CacheConfig::backend: null (make_cpu_backend() or make_backend())");
}

}  // namespace kvarn_cl
