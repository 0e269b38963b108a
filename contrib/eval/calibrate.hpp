// Per-layer preset calibration (docs/ACCURACY.md, "Per-layer presets"): measure how much each
// layer's cache quantization costs, then choose one preset per layer under a byte budget.
//
// Sensitivity of layer l at preset p: the mean KL(fp16 || config) of the next-token distributions
// over a calibration text when ONLY layer l's cache is quantized with p (every other layer keeps
// its fp16 cache). Every (layer, preset) pair runs side by side in one batch with the fp16
// reference, so the numbers are position-by-position comparable.
//
// Choice: the library's kvarn_cl::choose_layer_presets (include/kvarn_cl/layer_plan.hpp, greedy,
// treating the layers' costs as additive) with these KLs as the sensitivity. The budget is in
// bytes per token per KV head, averaged over the layers (records / G, steady state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvarn_cl/format.hpp"
#include "model.hpp"
#include "thread_pool.hpp"

namespace kvarn_eval {

struct Sensitivity {
  std::vector<kvarn_cl::Preset> ladder;  // cheapest first
  std::vector<double> bytes;             // bytes per token per KV head of each ladder preset
  std::vector<std::vector<double>> kl;   // [layer][ladder index]: mean KL, only that layer quantized
  std::vector<std::vector<double>> kl_p999;  // [layer][ladder index]: 99.9th percentile KL
  int tokens = 0;                        // calibration tokens scored per chunk
  double seconds = 0;
};

// tokens: the calibration chunk(s) (equal lengths). Throws InvalidArgument for an empty ladder or
// presets of different tile sizes (one KVCache shares G across layers).
Sensitivity measure_sensitivity(Model& model, ThreadPool& pool, const std::vector<std::vector<std::int32_t>>& chunks,
                                std::vector<kvarn_cl::Preset> ladder, int step, bool verbose);

struct LayerPlan {
  double budget = 0;
  std::vector<kvarn_cl::Preset> presets;  // per layer
  double bytes_per_token_head = 0;        // achieved (mean over layers)
  double predicted_kl = 0;                // sum over layers of their sensitivity at the chosen preset
};

// What the greedy choice minimizes: the sum over layers of their mean KL (default), or of their
// 99.9th-percentile KL (the tail of the per-position KL, treated as additive too).
enum class CalibrationObjective { mean_kl, p999_kl };
CalibrationObjective parse_objective(const std::string& name);

// Throws InvalidArgument if the budget is below the all-cheapest plan.
LayerPlan choose_presets(const Sensitivity& s, int head_dim, double budget,
                         CalibrationObjective objective = CalibrationObjective::mean_kl);

// Markdown: per layer, the sensitivity at every ladder preset and the preset each plan chose.
std::string sensitivity_table(const Sensitivity& s, const std::vector<LayerPlan>& plans);

}  // namespace kvarn_eval
