// See synthetic_kv.hpp for what the generated data imitates and why.
#include "synthetic_kv.hpp"

#include <cmath>
#include <random>

namespace kvarn_cl::cli {
namespace {

struct HeadShape {
  std::vector<float> key_mean;    // per channel; outliers have large |mean|
  std::vector<float> key_spread;  // per channel standard deviation
  std::vector<float> value_spread;
  std::vector<float> value_mean;   // per channel: values of one head share a mean direction
  std::vector<float> value_basis;  // kValueRank × d: and vary mostly inside a small subspace
};

// Real value vectors are far from white noise: a head's values share a mean and most of their
// variance lies in a few directions. Without that, a peaked softmax averages a handful of
// independent random vectors and any 2-bit code looks far worse than it does on a model.
constexpr int kValueRank = 8;

HeadShape head_shape(int d, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  HeadShape s;
  s.key_mean.resize(std::size_t(d));
  s.key_spread.assign(std::size_t(d), 1.0f);
  s.value_spread.assign(std::size_t(d), 1.0f);
  for (auto& m : s.key_mean) m = 0.5f * normal(rng);
  // Key outliers sit in low-frequency rotary pairs (high channel index within each half), where
  // the rotation barely turns them: that is where real models show them.
  const int half = d / 2;
  const int outliers[3] = {half - 1, half - 3, d - 2};
  for (int c : outliers) {
    s.key_mean[std::size_t(c)] =
        (normal(rng) > 0 ? 1.0f : -1.0f) * (8.0f + 4.0f * std::fabs(normal(rng)));
    s.key_spread[std::size_t(c)] = 4.0f;
  }
  // Value outliers: two channels with a larger spread.
  s.value_spread[std::size_t(d / 5)] = 8.0f;
  s.value_spread[std::size_t(3 * d / 4)] = 6.0f;
  s.value_mean.resize(std::size_t(d));
  for (auto& m : s.value_mean) m = normal(rng);
  s.value_basis.resize(std::size_t(kValueRank) * std::size_t(d));
  for (auto& b : s.value_basis) b = 0.7f * normal(rng);
  return s;
}

}  // namespace

SyntheticKv synthetic_kv(std::size_t tokens, int kv_heads, int head_dim, std::uint32_t seed,
                         std::size_t position_offset) {
  SyntheticKv kv;
  kv.head_dim = head_dim;
  kv.kv_heads = kv_heads;
  kv.tokens = tokens;
  const std::size_t d = std::size_t(head_dim), half = d / 2, stride = std::size_t(kv_heads) * d;
  kv.k.resize(tokens * stride);
  kv.v.resize(tokens * stride);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(d);
  for (int h = 0; h < kv_heads; ++h) {
    const HeadShape s = head_shape(head_dim, rng);
    for (std::size_t t = 0; t < tokens; ++t) {
      float* k = &kv.k[t * stride + std::size_t(h) * d];
      float* v = &kv.v[t * stride + std::size_t(h) * d];
      for (std::size_t c = 0; c < d; ++c) x[c] = s.key_mean[c] + s.key_spread[c] * normal(rng);
      // Rotary embedding (pairs c, c + D/2) at frequency 10000^(-2c/D).
      const double pos = double(t + position_offset);
      for (std::size_t c = 0; c < half; ++c) {
        const double angle = pos * std::pow(10000.0, -2.0 * double(c) / double(d));
        const float cs = float(std::cos(angle)), sn = float(std::sin(angle));
        k[c] = x[c] * cs - x[c + half] * sn;
        k[c + half] = x[c] * sn + x[c + half] * cs;
      }
      // Values: the head's mean, a token-dependent mix of a few directions, channel noise with a
      // few loud channels, and a per-token loudness (log-normal).
      const float loudness = std::exp(0.3f * normal(rng));
      float mix[kValueRank];
      for (float& a : mix) a = normal(rng);
      for (std::size_t c = 0; c < d; ++c) {
        float low_rank = 0.0f;
        for (int j = 0; j < kValueRank; ++j)
          low_rank += mix[j] * s.value_basis[std::size_t(j) * d + c];
        v[c] = loudness * (s.value_mean[c] + low_rank + 0.5f * s.value_spread[c] * normal(rng));
      }
    }
  }
  return kv;
}

std::vector<float> synthetic_queries(const SyntheticKv& kv, int q_heads, std::size_t position,
                                     std::uint32_t seed) {
  const std::size_t d = std::size_t(kv.head_dim), stride = std::size_t(kv.kv_heads) * d;
  const int group = q_heads / kv.kv_heads;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<std::size_t> pick(0, position > 0 ? position - 1 : 0);
  std::vector<float> q(std::size_t(q_heads) * d);
  for (int qh = 0; qh < q_heads; ++qh) {
    const std::size_t h = std::size_t(qh / group);
    float* out = &q[std::size_t(qh) * d];
    for (std::size_t c = 0; c < d; ++c) out[c] = normal(rng);
    // Lean toward four earlier keys so the softmax has a few clear winners: each adds about 2 to
    // its key's scaled score q·k/sqrt(D) (top scores end up a few units above the rest, as in
    // real attention heads; a much larger lean makes attention one-hot, none makes it flat).
    for (int n = 0; n < 4; ++n) {
      const float* k = &kv.k[pick(rng) * stride + h * d];
      double norm2 = 0;
      for (std::size_t c = 0; c < d; ++c) norm2 += double(k[c]) * k[c];
      const float gain = float(2.0 * std::sqrt(double(d)) / (norm2 + 1e-12));
      for (std::size_t c = 0; c < d; ++c) out[c] += gain * k[c];
    }
  }
  return q;
}

}  // namespace kvarn_cl::cli
