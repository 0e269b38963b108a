// The exact fp32-in, double-accumulated attention that tests, demos and the accuracy reports
// compare the cache's decode paths against. Deliberately naive: it is the yardstick, not a path.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

void exact_attention(const float* q, const float* k, const float* v, int num_q_heads,
                     int num_kv_heads, int head_dim, int tokens, float scale, float* out) {
  if (num_kv_heads <= 0 || num_q_heads <= 0 || num_q_heads % num_kv_heads != 0)
    throw InvalidArgument("exact_attention: num_q_heads " + std::to_string(num_q_heads) +
                          " is not a positive multiple of num_kv_heads " +
                          std::to_string(num_kv_heads));
  if (head_dim <= 0) throw InvalidArgument("exact_attention: head_dim " + std::to_string(head_dim));
  if (tokens < 0) throw InvalidArgument("exact_attention: tokens " + std::to_string(tokens));
  const int R = num_q_heads / num_kv_heads, D = head_dim;
  std::vector<double> score(std::size_t(std::max(tokens, 1)));
  for (int hq = 0; hq < num_q_heads; ++hq) {
    const float* qh = q + std::size_t(hq) * D;
    const std::size_t base = std::size_t(hq / R) * std::size_t(tokens) * D;
    double mx = -std::numeric_limits<double>::infinity();
    for (int t = 0; t < tokens; ++t) {
      double dot = 0;
      for (int d = 0; d < D; ++d) dot += double(qh[d]) * k[base + std::size_t(t) * D + d];
      score[std::size_t(t)] = dot * scale;
      mx = std::max(mx, score[std::size_t(t)]);
    }
    double sum = 0;
    for (int t = 0; t < tokens; ++t)
      sum += (score[std::size_t(t)] = std::exp(score[std::size_t(t)] - mx));
    for (int d = 0; d < D; ++d) {
      double o = 0;
      for (int t = 0; t < tokens; ++t)
        o += score[std::size_t(t)] * v[base + std::size_t(t) * D + d];
      out[std::size_t(hq) * D + d] = tokens > 0 ? float(o / sum) : 0.0f;
    }
  }
}

}  // namespace kvarn_cl
