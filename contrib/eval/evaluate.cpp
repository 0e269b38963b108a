#include "evaluate.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>

namespace kvarn_eval {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// log-softmax of one row of logits, in double.
void log_softmax(const float* z, std::size_t n, std::vector<double>& out) {
  out.resize(n);
  double mx = -INFINITY;
  for (std::size_t i = 0; i < n; ++i) mx = std::max(mx, double(z[i]));
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += std::exp(double(z[i]) - mx);
  const double lse = mx + std::log(sum);
  for (std::size_t i = 0; i < n; ++i) out[i] = double(z[i]) - lse;
}

std::size_t argmax(const float* z, std::size_t n) {
  return std::size_t(std::max_element(z, z + n) - z);
}

}  // namespace

double ScoreStats::perplexity(std::size_t w) const {
  return nll_count[w] ? std::exp(nll_sum[w] / double(nll_count[w])) : 0.0;
}

double ScoreStats::kl_quantile(double q) const {
  if (kl_values.empty()) return 0.0;
  std::vector<float> v = kl_values;
  std::sort(v.begin(), v.end());
  const double at = q * double(v.size() - 1);
  const std::size_t i = std::size_t(at);
  if (i + 1 >= v.size()) return v.back();
  return double(v[i]) + (at - double(i)) * (double(v[i + 1]) - double(v[i]));
}

std::size_t agreement_length(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
  std::size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

std::vector<ScoreStats> score_chunks(Model& model, ThreadPool& pool, const std::vector<KvConfig>& configs,
                                     std::size_t reference, const std::vector<std::vector<std::int32_t>>& chunks,
                                     const std::vector<int>& windows, int step_tokens, bool verbose,
                                     std::shared_ptr<kvarn_cl::Backend> backend) {
  for (const auto& c : configs)
    if (c.library_cache) step_tokens = 1;
  const ModelConfig& mc = model.config();
  const std::size_t C = configs.size(), V = std::size_t(mc.vocab);
  std::vector<ScoreStats> stats(C);
  for (auto& s : stats) {
    s.nll_sum.assign(windows.size(), 0.0);
    s.nll_count.assign(windows.size(), 0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t ci = 0; ci < chunks.size(); ++ci) {
    const auto& chunk = chunks[ci];
    const int ctx = int(chunk.size());
    std::vector<std::unique_ptr<KvStore>> caches;
    for (const auto& c : configs)
      caches.push_back(std::make_unique<KvStore>(c, mc.layers, mc.kv_heads, mc.head_dim, ctx, backend));
    std::vector<float> logits;
    for (int p0 = 0; p0 < ctx; p0 += step_tokens) {
      const int T = std::min(step_tokens, ctx - p0);
      std::vector<SequenceStep> steps;
      for (std::size_t c = 0; c < C; ++c) steps.push_back({caches[c].get(), chunk.data() + p0, T, true});
      model.forward(pool, steps, logits);
      // Row (c, i) predicts chunk[p0 + i + 1].
      const int scored = std::min(T, ctx - 1 - p0);
      std::vector<std::vector<double>> per(C);  // per config, per row: nll, kl, agree
      for (auto& v : per) v.assign(std::size_t(std::max(scored, 0)) * 3, 0.0);
      pool.parallel_for(std::size_t(std::max(scored, 0)), [&](std::size_t i) {
        const std::int32_t target = chunk[std::size_t(p0) + i + 1];
        std::vector<double> ref, cur;
        const float* zr = logits.data() + (reference * std::size_t(T) + i) * V;
        log_softmax(zr, V, ref);
        const std::size_t ref_top = argmax(zr, V);
        for (std::size_t c = 0; c < C; ++c) {
          const float* z = logits.data() + (c * std::size_t(T) + i) * V;
          log_softmax(z, V, cur);
          double kl = 0;
          if (c != reference)
            for (std::size_t k = 0; k < V; ++k) kl += std::exp(ref[k]) * (ref[k] - cur[k]);
          per[c][i * 3 + 0] = -cur[std::size_t(target)];
          per[c][i * 3 + 1] = std::max(kl, 0.0);
          per[c][i * 3 + 2] = argmax(z, V) == ref_top ? 1.0 : 0.0;
        }
      });
      for (std::size_t c = 0; c < C; ++c)
        for (int i = 0; i < scored; ++i) {
          const int pos = p0 + i;  // predicts token pos+1
          for (std::size_t w = 0; w < windows.size(); ++w)
            if (pos + 1 < windows[w]) {
              stats[c].nll_sum[w] += per[c][std::size_t(i) * 3];
              stats[c].nll_count[w] += 1;
            }
          stats[c].kl_sum += per[c][std::size_t(i) * 3 + 1];
          stats[c].kl_values.push_back(float(per[c][std::size_t(i) * 3 + 1]));
          stats[c].kl_count += 1;
          stats[c].top1_agree += long(per[c][std::size_t(i) * 3 + 2]);
        }
      if (verbose && ((p0 + T) % 64 == 0 || p0 + T == ctx))
        std::fprintf(stderr, "\r[score] chunk %zu/%zu  tokens %d/%d  %.0f s   ", ci + 1, chunks.size(),
                     p0 + T, ctx, seconds_since(t0));
    }
  }
  if (verbose) std::fprintf(stderr, "\n");
  return stats;
}

std::vector<std::vector<std::vector<std::int32_t>>> greedy_generate(
    Model& model, ThreadPool& pool, const std::vector<KvConfig>& configs,
    const std::vector<std::vector<std::int32_t>>& prompts, int gen_tokens, bool verbose,
    std::shared_ptr<kvarn_cl::Backend> backend) {
  bool one_token_steps = false;
  for (const auto& c : configs) one_token_steps = one_token_steps || c.library_cache;
  const ModelConfig& mc = model.config();
  const std::size_t C = configs.size(), P = prompts.size(), V = std::size_t(mc.vocab);
  std::vector<std::vector<std::vector<std::int32_t>>> out(C, std::vector<std::vector<std::int32_t>>(P));
  if (gen_tokens <= 0 || P == 0) return out;
  std::vector<std::unique_ptr<KvStore>> caches;  // slot = c * P + p
  for (std::size_t c = 0; c < C; ++c)
    for (std::size_t p = 0; p < P; ++p)
      caches.push_back(std::make_unique<KvStore>(configs[c], mc.layers, mc.kv_heads, mc.head_dim,
                                                 int(prompts[p].size()) + gen_tokens, backend));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits;
  std::vector<SequenceStep> steps;
  if (!one_token_steps) {
    for (std::size_t c = 0; c < C; ++c)
      for (std::size_t p = 0; p < P; ++p)
        steps.push_back({caches[c * P + p].get(), prompts[p].data(), int(prompts[p].size()), false});
    model.forward(pool, steps, logits);
  } else {
    // Prompts of different lengths, fed one token per step; the logits that matter are each
    // slot's after its last prompt token, collected as the slots finish.
    std::size_t longest = 0;
    for (const auto& p : prompts) longest = std::max(longest, p.size());
    std::vector<float> last(C * P * V);
    for (std::size_t i = 0; i < longest; ++i) {
      steps.clear();
      std::vector<std::size_t> slot_of;
      for (std::size_t s = 0; s < C * P; ++s)
        if (i < prompts[s % P].size()) {
          steps.push_back({caches[s].get(), prompts[s % P].data() + i, 1, false});
          slot_of.push_back(s);
        }
      model.forward(pool, steps, logits);
      for (std::size_t k = 0; k < slot_of.size(); ++k)
        if (i + 1 == prompts[slot_of[k] % P].size())
          std::copy(logits.begin() + std::ptrdiff_t(k * V), logits.begin() + std::ptrdiff_t((k + 1) * V),
                    last.begin() + std::ptrdiff_t(slot_of[k] * V));
    }
    logits = last;
  }
  std::vector<std::int32_t> next(C * P);
  for (int step = 0; step < gen_tokens; ++step) {
    for (std::size_t s = 0; s < C * P; ++s) {
      next[s] = std::int32_t(argmax(logits.data() + s * V, V));
      out[s / P][s % P].push_back(next[s]);
    }
    if (step + 1 == gen_tokens) break;
    steps.clear();
    for (std::size_t s = 0; s < C * P; ++s) steps.push_back({caches[s].get(), &next[s], 1, false});
    model.forward(pool, steps, logits);
    if (verbose && (step % 16 == 15 || step + 2 == gen_tokens))
      std::fprintf(stderr, "\r[greedy] %d/%d tokens  %.0f s   ", step + 2, gen_tokens, seconds_since(t0));
  }
  if (verbose) std::fprintf(stderr, "\n");
  return out;
}

}  // namespace kvarn_eval
