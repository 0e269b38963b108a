// Plan budgets in bytes per token per KV head (layer_plan.hpp).
#include <string>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/layer_plan.hpp"

namespace kvarn_cl {

double preset_bytes_per_token_head(Preset preset, int head_dim) {
  validate_head_dim(head_dim);
  CodecParams c;
  c.preset = preset;
  c.head_dim = head_dim;
  return double(RecordLayout::make(c).bytes) / double(c.group());
}

double budget_from_total_bytes(std::size_t total_bytes, std::size_t tokens, int num_kv_heads,
                               int num_layers) {
  if (tokens == 0) throw InvalidArgument("budget_from_total_bytes: tokens 0 must be >= 1");
  if (num_kv_heads < 1)
    throw InvalidArgument("budget_from_total_bytes: num_kv_heads " + std::to_string(num_kv_heads) +
                          " must be >= 1");
  if (num_layers < 1)
    throw InvalidArgument("budget_from_total_bytes: num_layers " + std::to_string(num_layers) +
                          " must be >= 1");
  return double(total_bytes) / (double(tokens) * double(num_kv_heads) * double(num_layers));
}

}  // namespace kvarn_cl
