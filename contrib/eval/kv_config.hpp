// The KV-cache configurations compared by kvarn-eval, parsed from short names:
//   fp32, fp16                        unquantized caches (fp16 is the reference)
//   k4v2_g128, k4v4_g64, ...          KVarN presets through the library codec
//   <preset>-nonorm                   ablation: no variance normalization (sinkhorn_iters 0)
//   <preset>-norot                    ablation: no Hadamard rotation
//   <preset>-plain                    ablation: neither (plain min/max rounding per row)
//   <preset>-itersN                   KVarN with N Sinkhorn iterations instead of 8
//   layers:FILE                       KVarN with one preset per layer from a layer-preset file
//   calib:B                           KVarN with the per-layer presets this run's calibration chose
//                                     for a budget of B bytes per token per KV head (--calibrate)
//   <kvarn config>+rN                 the same with the newest N tokens kept exact (fp16) beyond
//                                     the still-filling tile (CacheConfig::recent_tokens)
//   K8V8, K8V4, K4V4                  llama.cpp q8_0 / q4_0 caches (SPEC §8) as llama.cpp's CPU path
//                                     computes them: blocks of 32 over the key channels in
//                                     llama.cpp's permuted Q/K row order, and the query converted
//                                     to q8_0 for the scores (its flash attention does this
//                                     whenever K is quantized); no rotation
//   K8V8-had, ...                     the same after a Hadamard rotation of K, V and the query in
//                                     llama.cpp's channel order: llama.cpp's default for quantized
//                                     K/V when head_dim is a multiple of 64
//   K8V8-hf, ...                      the earlier simulation: blocks over Hugging Face channel order,
//                                     fp32 query (understates real q4_0's damage; for comparison)
//   <kvarn config>@cache              KVarN through the library's KVCache and Backend::attend (fused
//                                     decode attention from the records, --backend); decode only:
//                                     the evaluation then feeds one token per step
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ggml_kv_quant.hpp"
#include "kvarn_cl/format.hpp"

namespace kvarn_eval {

enum class KvKind { fp32, fp16, kvarn, ablation, ggml };

struct KvConfig {
  std::string name;
  KvKind kind = KvKind::fp16;
  kvarn_cl::CodecParams codec;  // kvarn, ablation (the preset of every layer unless layer_presets)
  std::vector<kvarn_cl::Preset> layer_presets;  // kvarn: one per layer, or empty
  // kvarn: the one layer that is quantized, every other layer keeps an fp16 cache (calibration's
  // per-layer sensitivity); -1 = all layers quantized.
  int only_layer = -1;
  int recent = 0;               // kvarn: newest tokens kept exact beyond the filling tile
  bool rotate = true;           // kvarn, ablation, ggml
  bool normalize = true;        // ablation
  GgmlKvType k_type = GgmlKvType::q8_0, v_type = GgmlKvType::q8_0;  // ggml
  bool llama_order = true;      // ggml: K blocks over llama.cpp's permuted key channels
  bool q8_query = true;         // ggml: query rounded to q8_0 blocks for the scores
  bool library_cache = false;   // kvarn: run through kvarn_cl::KVCache instead of the simulation

  bool tiled() const { return kind == KvKind::kvarn || kind == KvKind::ablation; }
  int group() const { return tiled() ? codec.group() : 0; }
  kvarn_cl::CodecParams codec_for(int layer) const;
  // Whether `layer` holds a quantized cache (false only for the fp16 layers of an only_layer config).
  bool quantizes(int layer) const { return only_layer < 0 || layer == only_layer; }
  // Tiles quantized once `tokens` tokens are cached (tiled kinds): the sink tile and the newest
  // `recent` tokens and the still-filling tile stay fp16.
  int quantized_tiles(int tokens) const;
  // Steady-state bytes per token per KV head, K and V together (records / G for tiles, scales
  // included; what a long sequence converges to), averaged over the layers.
  double bytes_per_token_head() const;
  // Every byte held for one KV head of a ctx-token sequence (tiled: fp16 sink tile + records +
  // fp16 tail and recent window), divided by ctx, averaged over the layers.
  double resident_bytes_per_token_head(int ctx) const;
  std::string describe() const;

  // `plans`: the per-layer presets of this run's calibration by budget (for calib:B names).
  // Throws kvarn_cl::InvalidArgument naming the bad name and listing the accepted forms.
  static KvConfig parse(const std::string& name, int head_dim,
                        const std::map<std::string, std::vector<kvarn_cl::Preset>>& plans = {});
};

// The configurations of the full table, in table order.
std::vector<std::string> default_config_names();

}  // namespace kvarn_eval
