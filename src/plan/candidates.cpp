// Candidate presets of a plan (candidates.hpp).
#include "plan/candidates.hpp"

#include <algorithm>
#include <numeric>
#include <string>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/layer_plan.hpp"

namespace kvarn_cl::plan {

void check_candidates(const std::vector<Preset>& presets, const char* argument) {
  if (presets.empty())
    throw InvalidArgument(std::string(argument) + " is empty: at least one candidate preset");
  for (std::size_t i = 0; i < presets.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      if (presets[j] == presets[i])
        throw InvalidArgument(std::string(argument) + "[" + std::to_string(i) + "] " +
                              to_string(presets[i]) + " repeats " + argument + "[" +
                              std::to_string(j) + "]");
    if (preset_info(presets[i]).group != preset_info(presets[0]).group)
      throw InvalidArgument(
          std::string(argument) + "[" + std::to_string(i) + "] " + to_string(presets[i]) +
          " has tile size " + std::to_string(preset_info(presets[i]).group) + ", " +
          to_string(presets[0]) + " has " + std::to_string(preset_info(presets[0]).group) +
          " (the layers of one cache share G)");
  }
}

std::vector<std::size_t> cheapest_first(const std::vector<Preset>& presets, int head_dim) {
  std::vector<std::size_t> order(presets.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return preset_bytes_per_token_head(presets[a], head_dim) <
           preset_bytes_per_token_head(presets[b], head_dim);
  });
  return order;
}

}  // namespace kvarn_cl::plan
