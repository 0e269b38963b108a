// The C API of per-layer preset plans (kvarn_cl.h) over include/kvarn_cl/layer_plan.hpp.
#include <string>
#include <vector>

#include "capi/arguments.hpp"
#include "capi/last_error.hpp"
#include "kvarn_cl/kvarn_cl.h"
#include "kvarn_cl/layer_plan.hpp"

namespace {

using namespace kvarn_cl;
using capi::from_preset;
using capi::require;
using capi::to_preset;

std::vector<Preset> candidates(const kvarn_cl_preset* presets, size_t num_presets) {
  require(presets, "presets");
  if (num_presets == 0) throw InvalidArgument("num_presets 0: at least one candidate preset");
  // Candidates are distinct, so a longer list is a wrong count (and would be read out of bounds).
  if (num_presets > all_presets().size())
    throw InvalidArgument("num_presets " + std::to_string(num_presets) + ": there are " +
                          std::to_string(all_presets().size()) +
                          " presets and the candidates must be distinct");
  std::vector<Preset> out;
  for (size_t i = 0; i < num_presets; ++i) out.push_back(to_preset(presets[i]));
  return out;
}

void require_layers(int num_layers) {
  if (num_layers < 1)
    throw InvalidArgument("num_layers " + std::to_string(num_layers) + " must be >= 1");
}

}  // namespace

extern "C" {

kvarn_cl_status kvarn_cl_preset_bytes_per_token_head(kvarn_cl_preset preset, int head_dim,
                                                     double* out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = preset_bytes_per_token_head(to_preset(preset), head_dim);
  });
}

kvarn_cl_status kvarn_cl_budget_from_total_bytes(size_t total_bytes, size_t tokens,
                                                 int num_kv_heads, int num_layers, double* out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = budget_from_total_bytes(total_bytes, tokens, num_kv_heads, num_layers);
  });
}

kvarn_cl_status kvarn_cl_layer_sensitivity_measure(const kvarn_cl_preset* presets,
                                                   size_t num_presets, int head_dim,
                                                   int sinkhorn_iters, int num_layers, int tokens,
                                                   int num_kv_heads, const float* k, const float* v,
                                                   double* error) {
  return capi::guarded([&] {
    const std::vector<Preset> list = candidates(presets, num_presets);
    require(k, "k");
    require(v, "v");
    require(error, "error");
    require_layers(num_layers);
    CodecParams codec;
    codec.head_dim = head_dim;
    codec.sinkhorn_iters = sinkhorn_iters;
    const LayerSensitivity s =
        measure_layer_sensitivity(codec, list, num_layers, tokens, num_kv_heads, k, v);
    for (size_t l = 0; l < s.error.size(); ++l)
      for (size_t i = 0; i < list.size(); ++i) error[l * list.size() + i] = s.error[l][i];
  });
}

kvarn_cl_status kvarn_cl_layer_plan_choose(const kvarn_cl_preset* presets, size_t num_presets,
                                           int num_layers, const double* error, int head_dim,
                                           double budget, kvarn_cl_preset* plan,
                                           double* bytes_per_token_head) {
  return capi::guarded([&] {
    LayerSensitivity s;
    s.presets = candidates(presets, num_presets);
    require(error, "error");
    require(plan, "plan");
    require_layers(num_layers);
    for (int l = 0; l < num_layers; ++l)
      s.error.emplace_back(error + size_t(l) * num_presets, error + size_t(l + 1) * num_presets);
    const LayerPlan chosen = choose_layer_presets(s, head_dim, budget);
    for (size_t l = 0; l < chosen.presets.size(); ++l) plan[l] = from_preset(chosen.presets[l]);
    if (bytes_per_token_head != nullptr) *bytes_per_token_head = chosen.bytes_per_token_head;
  });
}

}  // extern "C"
