// The greedy per-layer preset choice under a byte budget (layer_plan.hpp). Moved here from
// kvarn-eval --calibrate, which now calls it.
//
// Sums are kept in record bytes (integers, exact) so that "fits the budget" is decided without
// rounding: a plan fits when its record bytes summed over layers are <= budget * G * layers.
#include <cmath>
#include <sstream>
#include <string>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/layer_plan.hpp"
#include "plan/candidates.hpp"

namespace kvarn_cl {

namespace {

void check_errors(const LayerSensitivity& s) {
  if (s.error.empty()) throw InvalidArgument("sensitivity.error has no layers: one row per layer");
  for (std::size_t l = 0; l < s.error.size(); ++l) {
    if (s.error[l].size() != s.presets.size())
      throw InvalidArgument("sensitivity.error[" + std::to_string(l) + "] has " +
                            std::to_string(s.error[l].size()) + " values for " +
                            std::to_string(s.presets.size()) + " candidate presets");
    for (std::size_t i = 0; i < s.presets.size(); ++i) {
      const double e = s.error[l][i];
      if (!std::isfinite(e) || e < 0) {
        std::ostringstream m;
        m << "sensitivity.error[" << l << "][" << i << "] (" << to_string(s.presets[i]) << ") " << e
          << " must be finite and >= 0";
        throw InvalidArgument(m.str());
      }
    }
  }
}

}  // namespace

LayerPlan choose_layer_presets(const LayerSensitivity& s, int head_dim, double budget) {
  plan::check_candidates(s.presets, "sensitivity.presets");
  validate_head_dim(head_dim);
  check_errors(s);
  if (!std::isfinite(budget) || budget <= 0) {
    std::ostringstream m;
    m << "budget " << budget << " B/token/head must be finite and > 0";
    throw InvalidArgument(m.str());
  }
  const std::vector<std::size_t> order = plan::cheapest_first(s.presets, head_dim);
  const std::size_t L = s.error.size(), P = order.size();
  const int G = preset_info(s.presets[0]).group;
  std::vector<double> record_bytes(P);  // by rank (cheapest first); whole numbers
  for (std::size_t r = 0; r < P; ++r)
    record_bytes[r] = preset_bytes_per_token_head(s.presets[order[r]], head_dim) * G;
  auto error_at = [&](std::size_t layer, std::size_t rank) { return s.error[layer][order[rank]]; };

  const double limit = budget * double(G) * double(L);
  double total = record_bytes[0] * double(L);
  if (total > limit) {
    std::ostringstream m;
    m << "budget " << budget << " B/token/head is below the cheapest plan: every layer at "
      << to_string(s.presets[order[0]]) << " takes " << record_bytes[0] / G
      << " B/token/head (head_dim " << head_dim << ")";
    throw InvalidArgument(m.str());
  }
  std::vector<std::size_t> at(L, 0);  // each layer's rank
  for (;;) {
    double best = 0;
    std::size_t best_l = L, best_r = 0;
    for (std::size_t l = 0; l < L; ++l)
      for (std::size_t r = at[l] + 1; r < P; ++r) {
        const double cost = record_bytes[r] - record_bytes[at[l]];
        if (total + cost > limit) continue;
        const double gain = (error_at(l, at[l]) - error_at(l, r)) / cost;
        if (gain >
            best) {  // strict: the earliest layer wins a tie, and no upgrade that gains nothing
          best = gain;
          best_l = l;
          best_r = r;
        }
      }
    if (best_l == L) break;
    total += record_bytes[best_r] - record_bytes[at[best_l]];
    at[best_l] = best_r;
  }
  LayerPlan plan;
  plan.budget = budget;
  for (std::size_t l = 0; l < L; ++l) {
    plan.presets.push_back(s.presets[order[at[l]]]);
    plan.predicted_error += error_at(l, at[l]);
  }
  plan.bytes_per_token_head = total / (double(G) * double(L));
  return plan;
}

}  // namespace kvarn_cl
