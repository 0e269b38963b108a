// The KV-cache configurations compared by kvarn-eval, parsed from short names:
//   fp32, fp16                        unquantized caches (fp16 is the reference)
//   k4v2_g128, k4v4_g64, ...          KVarN presets through the library codec
//   <preset>-nonorm                   ablation: no variance normalization (sinkhorn_iters 0)
//   <preset>-norot                    ablation: no Hadamard rotation
//   <preset>-plain                    ablation: neither (plain min/max rounding per row)
//   <preset>-itersN                   KVarN with N Sinkhorn iterations instead of 8
//   K8V8, K8V4, K4V4                  llama.cpp q8_0 / q4_0 caches (SPEC §8), no rotation
//   K4V4-had, K8V4-had                the same after a Hadamard rotation (recent llama.cpp)
//   <preset>@cache                    KVarN through the library's KVCache and Backend::attend (fused
//                                     decode attention from the records, --backend); decode only:
//                                     the evaluation then feeds one token per step
#pragma once

#include <string>
#include <vector>

#include "ggml_kv_quant.hpp"
#include "kvarn_cl/format.hpp"

namespace kvarn_eval {

enum class KvKind { fp32, fp16, kvarn, ablation, ggml };

struct KvConfig {
  std::string name;
  KvKind kind = KvKind::fp16;
  kvarn_cl::CodecParams codec;  // kvarn, ablation
  bool rotate = true;           // kvarn, ablation, ggml
  bool normalize = true;        // ablation
  GgmlKvType k_type = GgmlKvType::q8_0, v_type = GgmlKvType::q8_0;  // ggml
  bool library_cache = false;   // kvarn: run through kvarn_cl::KVCache instead of the simulation

  bool tiled() const { return kind == KvKind::kvarn || kind == KvKind::ablation; }
  int group() const { return tiled() ? codec.group() : 0; }
  // Steady-state bytes per token per KV head, K and V together (records / G for tiles, scales
  // included; what a long sequence converges to).
  double bytes_per_token_head() const;
  // Every byte held for one KV head of a ctx-token sequence (tiled: fp16 sink tile + records +
  // fp16 tail), divided by ctx.
  double resident_bytes_per_token_head(int ctx) const;
  std::string describe() const;

  // Throws kvarn_cl::InvalidArgument naming the bad name and listing the accepted forms.
  static KvConfig parse(const std::string& name, int head_dim);
};

// The configurations of the full table, in table order.
std::vector<std::string> default_config_names();

}  // namespace kvarn_eval
