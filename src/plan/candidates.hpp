// The candidate presets of a plan: checked once, ordered cheapest first.
#pragma once

#include <cstddef>
#include <vector>

#include "kvarn_cl/format.hpp"

namespace kvarn_cl::plan {

// Throws InvalidArgument (naming `argument`) for no candidates, a repeated one, or candidates of
// different tile sizes (one KVCache shares G across layers).
void check_candidates(const std::vector<Preset>& presets, const char* argument);

// Indices into `presets`, cheapest record first (distinct presets of one G differ in bytes).
std::vector<std::size_t> cheapest_first(const std::vector<Preset>& presets, int head_dim);

}  // namespace kvarn_cl::plan
