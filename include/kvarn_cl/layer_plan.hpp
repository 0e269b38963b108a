// Per-layer preset plans: which preset each layer's cache should use under a byte budget
// (docs/ACCURACY.md, "Per-layer presets"). The result is CacheConfig::layer_presets (cache.hpp),
// and format_layer_presets writes it as a layer-preset file.
//
// Two steps, each usable alone:
//  1. sensitivity: how much each layer loses at each candidate preset. Either the caller measures
//     it (e.g. the mean KL of the next-token distribution with only that layer quantized, as
//     `kvarn-eval --calibrate` does with a model) or measure_layer_sensitivity computes a proxy
//     from K/V rows the caller captured, with the CPU codec.
//  2. choose_layer_presets: every layer starts at the cheapest candidate; the single upgrade (one
//     layer to any dearer candidate) with the largest error reduction per added byte that still
//     fits the budget is applied, repeatedly, until none fits. The layers' errors are treated as
//     additive. The plan never exceeds the budget.
//
// Budgets are steady-state bytes per token per KV head, K and V together, averaged over the
// layers: a record's bytes / G (scales included; the fp16 sink, tail and recent window are not
// counted, they do not depend on the plan). budget_from_total_bytes converts a total.
#pragma once

#include <cstddef>
#include <vector>

#include "kvarn_cl/format.hpp"

namespace kvarn_cl {

// Bytes per token per KV head of `preset` at `head_dim` (record bytes / G).
double preset_bytes_per_token_head(Preset preset, int head_dim);

// The per-layer budget of `total_bytes` of records holding `tokens` tokens (all sequences) of
// num_kv_heads heads in each of num_layers layers. Throws InvalidArgument naming a zero count.
double budget_from_total_bytes(std::size_t total_bytes, std::size_t tokens, int num_kv_heads,
                               int num_layers);

struct LayerSensitivity {
  std::vector<Preset> presets;             // candidates, any order, distinct, one tile size G
  std::vector<std::vector<double>> error;  // [layer][candidate]: finite, >= 0, smaller is better
};

struct LayerPlan {
  std::vector<Preset> presets;      // one per layer, for CacheConfig::layer_presets
  double budget = 0;                // the budget asked for, bytes per token per KV head
  double bytes_per_token_head = 0;  // what the plan takes (mean over layers), <= budget
  double predicted_error = 0;       // sum over layers of the error at the chosen preset
};

// Throws InvalidArgument naming the argument and value: no candidates or layers, a row of
// `error` of the wrong length, a non-finite or negative error, repeated candidates or candidates
// of different tile sizes, an invalid head_dim, a budget that is not finite and > 0, or a budget
// below the cheapest plan (every layer at the cheapest candidate; the message names both).
LayerPlan choose_layer_presets(const LayerSensitivity& sensitivity, int head_dim, double budget);

// The proxy sensitivity of step 1 from captured rows: k and v hold num_layers × tokens ×
// num_kv_heads × head_dim floats (layer-major, then as KVCache::append takes one sequence:
// [tokens][Hk][D], original frame). Each whole tile of G tokens of each head (tokens beyond the
// last whole tile are not used) is rotated, quantized and decoded with the CPU codec at every
// candidate (codec.head_dim and codec.sinkhorn_iters; codec.preset is ignored). error[l][i] =
// |K - K'|² / |K|² + |V - V'|² / |V|² over layer l's tiles (rotated frame, relative squared
// error). A cheap stand-in for a model's own loss: it sees every head alike and not how the model
// uses them, so measured model losses, where available, choose better plans.
// Throws InvalidArgument (as above, tokens < G, null k/v), NonFiniteInput (NaN/Inf rows).
LayerSensitivity measure_layer_sensitivity(const CodecParams& codec,
                                           const std::vector<Preset>& presets, int num_layers,
                                           int tokens, int num_kv_heads, const float* k,
                                           const float* v);

}  // namespace kvarn_cl
