// The two measurements of kvarn-eval, each running every cache configuration side by side in one
// batch so that the reference (fp16) and every other configuration see the same tokens and their
// next-token distributions can be compared position by position:
//   - teacher-forced scoring of text chunks: perplexity in windows, KL(reference || config),
//     top-1 agreement;
//   - greedy generation from prompts: how many tokens each configuration agrees with the
//     reference before the first difference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv_config.hpp"
#include "kvarn_cl/backend.hpp"
#include "model.hpp"
#include "thread_pool.hpp"

namespace kvarn_eval {

struct ScoreStats {
  std::vector<double> nll_sum;  // per window
  std::vector<long> nll_count;
  double kl_sum = 0;           // over every scored position of the whole context
  long kl_count = 0;
  long top1_agree = 0;
  std::vector<float> kl_values;  // KL of every scored position (for the median and percentiles)
  double perplexity(std::size_t window) const;
  double mean_kl() const { return kl_count ? kl_sum / kl_count : 0; }
  // q-quantile of the per-position KL (0.5: median; 0.999: llama.cpp's "99.9%"), linear
  // interpolation between order statistics.
  double kl_quantile(double q) const;
  double top1() const { return kl_count ? double(top1_agree) / kl_count : 0; }
};

// chunks: token sequences of equal length ctx. windows: context lengths (each <= ctx); window L
// averages the predictions of tokens 1..L-1 of every chunk. Returns one entry per config; KL and
// top-1 are measured against configs[reference]. Configs held in a library KVCache (@cache) force
// one token per step (KVCache::attend is decode attention).
std::vector<ScoreStats> score_chunks(Model& model, ThreadPool& pool, const std::vector<KvConfig>& configs,
                                     std::size_t reference, const std::vector<std::vector<std::int32_t>>& chunks,
                                     const std::vector<int>& windows, int step_tokens, bool verbose,
                                     std::shared_ptr<kvarn_cl::Backend> backend = nullptr);

// Greedy decoding of gen_tokens tokens per prompt (end-of-sequence tokens do not stop it, so that
// every configuration is compared over the same length). Returns [config][prompt] token lists.
std::vector<std::vector<std::vector<std::int32_t>>> greedy_generate(
    Model& model, ThreadPool& pool, const std::vector<KvConfig>& configs,
    const std::vector<std::vector<std::int32_t>>& prompts, int gen_tokens, bool verbose,
    std::shared_ptr<kvarn_cl::Backend> backend = nullptr);

// Length of the common prefix of a and b.
std::size_t agreement_length(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b);

}  // namespace kvarn_eval
