#include "model.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "format/printable.hpp"
#include "kvarn_cl/error.hpp"
#include "matmul.hpp"

namespace kvarn_eval {
namespace {

typedef float v16 __attribute__((vector_size(64), aligned(4)));

// Dot product of two length-n rows, n % 16 == 0 (head_dim is 64, 128 or 256 here).
inline float dot16(const float* a, const float* b, int n) {
  v16 acc = {};
  for (int k = 0; k < n; k += 16) {
    v16 x, y;
    std::memcpy(&x, a + k, sizeof(x));
    std::memcpy(&y, b + k, sizeof(y));
    acc += x * y;
  }
  float s = 0;
  for (int i = 0; i < 16; ++i) s += acc[i];
  return s;
}

// Undo llama.cpp's Q/K row permutation (convert_hf_to_gguf.py, LlamaModel.permute): within each
// head, GGUF row 2i+j holds Hugging Face row j·(D/2)+i.
std::vector<float> unpermute_rows(const std::vector<float>& w, int heads, int head_dim, int cols) {
  std::vector<float> out(w.size());
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < half; ++i)
      for (int j = 0; j < 2; ++j) {
        const std::size_t src = std::size_t(h * head_dim + 2 * i + j) * cols;
        const std::size_t dst = std::size_t(h * head_dim + j * half + i) * cols;
        std::memcpy(out.data() + dst, w.data() + src, std::size_t(cols) * sizeof(float));
      }
  return out;
}

void rms_norm(const float* x, const float* w, float* y, int n, double eps) {
  double ss = 0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float inv = float(1.0 / std::sqrt(ss / n + eps));
  for (int i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
}

}  // namespace

Model::Model(const GgufFile& f) {
  const std::string arch = f.string("general.architecture");
  if (arch != "llama")
    throw kvarn_cl::Unsupported("model architecture '" + kvarn_cl::printable(arch) + "' is not supported (kvarn-eval runs 'llama')");
  cfg_.name = f.has("general.name") ? f.string("general.name") : arch;
  // Sizes come from a downloaded file: each is range-checked before it divides or sizes anything.
  auto count = [&](const std::string& key, std::int64_t max) {
    const std::int64_t v = f.integer(key);
    if (v < 1 || v > max) {
      std::ostringstream m;
      m << "GGUF file '" << f.path() << "': " << key << " = " << v << " (expected 1.." << max << ")";
      throw kvarn_cl::InvalidArgument(m.str());
    }
    return int(v);
  };
  cfg_.layers = count("llama.block_count", 4096);
  cfg_.d_model = count("llama.embedding_length", 1 << 20);
  cfg_.heads = count("llama.attention.head_count", 4096);
  cfg_.kv_heads = f.has("llama.attention.head_count_kv") ? count("llama.attention.head_count_kv", 4096) : cfg_.heads;
  cfg_.d_ff = count("llama.feed_forward_length", 1 << 22);
  if (cfg_.d_model % cfg_.heads != 0) {
    std::ostringstream m;
    m << "GGUF file '" << f.path() << "': llama.embedding_length " << cfg_.d_model
      << " is not a multiple of llama.attention.head_count " << cfg_.heads;
    throw kvarn_cl::InvalidArgument(m.str());
  }
  cfg_.head_dim = cfg_.d_model / cfg_.heads;
  if (f.has("llama.rope.dimension_count") && f.integer("llama.rope.dimension_count") != cfg_.head_dim)
    throw kvarn_cl::Unsupported("partial rotary embeddings (llama.rope.dimension_count != head_dim) are not supported");
  if (f.has("llama.rope.freq_base")) cfg_.rope_theta = f.number("llama.rope.freq_base");
  if (!(cfg_.rope_theta > 0) || !std::isfinite(cfg_.rope_theta))
    throw kvarn_cl::InvalidArgument("GGUF file '" + f.path() + "': llama.rope.freq_base = " +
                                    std::to_string(cfg_.rope_theta) + " (expected a finite positive number)");
  if (f.has("llama.rope.scaling.type") && f.string("llama.rope.scaling.type") != "none")
    throw kvarn_cl::Unsupported("RoPE scaling '" + f.string("llama.rope.scaling.type") + "' is not supported");
  if (f.has_tensor("rope_freqs.weight"))
    throw kvarn_cl::Unsupported("models with rope_freqs (Llama 3.1 frequency scaling) are not supported");
  cfg_.rms_eps = f.number("llama.attention.layer_norm_rms_epsilon");
  if (!(cfg_.rms_eps >= 0) || !std::isfinite(cfg_.rms_eps))
    throw kvarn_cl::InvalidArgument("GGUF file '" + f.path() + "': llama.attention.layer_norm_rms_epsilon = " +
                                    std::to_string(cfg_.rms_eps) + " (expected a finite number >= 0)");
  cfg_.train_context = f.has("llama.context_length") ? count("llama.context_length", INT32_MAX) : 0;
  if (cfg_.heads % cfg_.kv_heads != 0 || cfg_.head_dim % 16 != 0)
    throw kvarn_cl::Unsupported("head layout not supported (heads % kv_heads or head_dim % 16)");

  const int d = cfg_.d_model, D = cfg_.head_dim;
  auto load = [&](const std::string& name, std::size_t expect) {
    const GgufTensor& t = f.tensor(name);
    std::vector<float> w = f.dequantize(t);
    if (w.size() != expect) {
      std::ostringstream m;
      m << "tensor '" << name << "' has " << w.size() << " elements, expected " << expect;
      throw kvarn_cl::InvalidArgument(m.str());
    }
    return w;
  };
  const std::size_t q_rows = std::size_t(cfg_.heads) * D, kv_rows = std::size_t(cfg_.kv_heads) * D;
  embedding_ = f.dequantize(f.tensor("token_embd.weight"));
  if (embedding_.empty() || embedding_.size() % std::size_t(d) != 0 ||
      embedding_.size() / std::size_t(d) > std::size_t(INT32_MAX)) {
    std::ostringstream m;
    m << "tensor 'token_embd.weight' has " << embedding_.size()
      << " elements, not a whole number of rows of llama.embedding_length " << d;
    throw kvarn_cl::InvalidArgument(m.str());
  }
  cfg_.vocab = int(embedding_.size() / std::size_t(d));
  if (f.has_tensor("output.weight")) {
    output_ = load("output.weight", std::size_t(cfg_.vocab) * d);
  } else {
    cfg_.tied_embeddings = true;
  }
  output_norm_ = load("output_norm.weight", std::size_t(d));
  layers_.resize(std::size_t(cfg_.layers));
  for (int i = 0; i < cfg_.layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    Layer& l = layers_[std::size_t(i)];
    l.attn_norm = load(p + "attn_norm.weight", std::size_t(d));
    l.ffn_norm = load(p + "ffn_norm.weight", std::size_t(d));
    const auto wq = unpermute_rows(load(p + "attn_q.weight", q_rows * d), cfg_.heads, D, d);
    const auto wk = unpermute_rows(load(p + "attn_k.weight", kv_rows * d), cfg_.kv_heads, D, d);
    const auto wv = load(p + "attn_v.weight", kv_rows * d);
    l.wqkv.reserve(wq.size() + wk.size() + wv.size());
    l.wqkv.insert(l.wqkv.end(), wq.begin(), wq.end());
    l.wqkv.insert(l.wqkv.end(), wk.begin(), wk.end());
    l.wqkv.insert(l.wqkv.end(), wv.begin(), wv.end());
    l.wo = load(p + "attn_output.weight", std::size_t(d) * d);
    l.w_gate_up = load(p + "ffn_gate.weight", std::size_t(cfg_.d_ff) * d);
    const auto up = load(p + "ffn_up.weight", std::size_t(cfg_.d_ff) * d);
    l.w_gate_up.insert(l.w_gate_up.end(), up.begin(), up.end());
    l.w_down = load(p + "ffn_down.weight", std::size_t(d) * cfg_.d_ff);
  }
  reserve_positions(2048);
}

void Model::reserve_positions(int n) {
  if (n <= rope_positions_) return;
  const int half = cfg_.head_dim / 2;
  rope_cos_.resize(std::size_t(n) * half);
  rope_sin_.resize(std::size_t(n) * half);
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < half; ++i) {
      // Hugging Face: inv_freq[i] = theta^(-2i/D); angle = p·inv_freq (computed here in double).
      const double angle = p * std::pow(cfg_.rope_theta, -2.0 * i / cfg_.head_dim);
      rope_cos_[std::size_t(p) * half + i] = float(std::cos(angle));
      rope_sin_[std::size_t(p) * half + i] = float(std::sin(angle));
    }
  rope_positions_ = n;
}

void Model::attention(ThreadPool& pool, const std::vector<SequenceStep>& steps,
                      const std::vector<int>& row0, int layer, const float* qkv, float* out) const {
  const int D = cfg_.head_dim, Hk = cfg_.kv_heads, rep = cfg_.heads / cfg_.kv_heads;
  const std::size_t width = std::size_t(cfg_.heads + 2 * Hk) * D;
  const float scale = 1.0f / std::sqrt(float(D));
  // One item per (sequence, new token, KV head): the rep query heads of a group share K/V reads.
  // Sequences held in a library KVCache attend through it (decode: one token per step); the
  // others are computed here from their store's views.
  std::vector<std::size_t> item_start;
  std::size_t items = 0;
  for (std::size_t s = 0; s < steps.size(); ++s) {
    item_start.push_back(items);
    if (steps[s].cache->library()) {
      if (steps[s].count != 1)
        throw kvarn_cl::InvalidArgument("config '" + steps[s].cache->config().name +
                                        "' (library KVCache) takes one token per step (use --step 1)");
      const std::size_t row = std::size_t(row0[s]);
      steps[s].cache->library_attend(layer, cfg_.heads, qkv + row * width, out + row * std::size_t(cfg_.d_model));
      continue;
    }
    items += std::size_t(steps[s].count) * Hk;
  }
  pool.parallel_for(items, [&](std::size_t item) {
    std::size_t s = 0;
    while (s + 1 < item_start.size() && item_start[s + 1] <= item) ++s;
    const std::size_t local = item - item_start[s];
    const int i = int(local / std::size_t(Hk)), g = int(local % std::size_t(Hk));
    const KvStore& cache = *steps[s].cache;
    const int t = cache.length() + i;  // absolute position of this query
    const int B = cache.boundary(layer, t);
    const float *qk = cache.quant_k(layer), *qv = cache.quant_v(layer);
    const float *ek = cache.exact_k(layer), *ev = cache.exact_v(layer);
    const std::size_t row = std::size_t(row0[s] + i);
    thread_local std::vector<float> scores;
    scores.resize(std::size_t(rep) * (t + 1));
    thread_local std::vector<float> q_seen;
    for (int r = 0; r < rep; ++r) {
      const float* q = qkv + row * width + std::size_t(g * rep + r) * D;
      if (cache.transforms_query()) {  // llama.cpp's q8_0 query for quantized K
        q_seen.resize(std::size_t(D));
        cache.transform_query(q, q_seen.data());
        q = q_seen.data();
      }
      float* sc = scores.data() + std::size_t(r) * (t + 1);
      float mx = -INFINITY;
      for (int j = 0; j <= t; ++j) {
        const float* k = (j < B ? qk : ek) + (std::size_t(j) * Hk + g) * D;
        sc[j] = dot16(q, k, D) * scale;
        mx = std::max(mx, sc[j]);
      }
      double sum = 0;
      for (int j = 0; j <= t; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = float(1.0 / sum);
      float* o = out + row * std::size_t(cfg_.d_model) + std::size_t(g * rep + r) * D;
      std::fill(o, o + D, 0.0f);
      for (int j = 0; j <= t; ++j) {
        const float p = sc[j] * inv;
        const float* v = (j < B ? qv : ev) + (std::size_t(j) * Hk + g) * D;
        for (int c = 0; c < D; ++c) o[c] += p * v[c];
      }
    }
  });
}

void Model::forward(ThreadPool& pool, const std::vector<SequenceStep>& steps, std::vector<float>& logits) {
  const int d = cfg_.d_model, D = cfg_.head_dim, H = cfg_.heads, Hk = cfg_.kv_heads;
  std::vector<int> row0;
  int M = 0, max_pos = 0;
  for (const auto& st : steps) {
    row0.push_back(M);
    M += st.count;
    max_pos = std::max(max_pos, st.cache->length() + st.count);
  }
  reserve_positions(max_pos);
  const std::size_t width = std::size_t(H + 2 * Hk) * D;
  std::vector<float> x(std::size_t(M) * d), h(std::size_t(M) * d), qkv(std::size_t(M) * width),
      att(std::size_t(M) * d), tmp(std::size_t(M) * d), gu(std::size_t(M) * 2 * cfg_.d_ff),
      act(std::size_t(M) * cfg_.d_ff);
  for (std::size_t s = 0; s < steps.size(); ++s)
    for (int i = 0; i < steps[s].count; ++i) {
      const int tok = steps[s].tokens[i];
      if (tok < 0 || tok >= cfg_.vocab) {
        std::ostringstream m;
        m << "token id " << tok << " is outside the vocabulary [0, " << cfg_.vocab << ")";
        throw kvarn_cl::InvalidArgument(m.str());
      }
      std::memcpy(x.data() + std::size_t(row0[s] + i) * d, embedding_.data() + std::size_t(tok) * d,
                  std::size_t(d) * sizeof(float));
    }
  const int half = D / 2;
  for (int li = 0; li < cfg_.layers; ++li) {
    const Layer& L = layers_[std::size_t(li)];
    for (int m = 0; m < M; ++m)
      rms_norm(x.data() + std::size_t(m) * d, L.attn_norm.data(), h.data() + std::size_t(m) * d, d, cfg_.rms_eps);
    matmul_xwt(pool, h.data(), L.wqkv.data(), qkv.data(), std::size_t(M), width, std::size_t(d));
    // Rotary embeddings (rotate-half) on the H query heads and Hk key heads of every row.
    for (std::size_t s = 0; s < steps.size(); ++s)
      for (int i = 0; i < steps[s].count; ++i) {
        const int pos = steps[s].cache->length() + i;
        const float* c = rope_cos_.data() + std::size_t(pos) * half;
        const float* sn = rope_sin_.data() + std::size_t(pos) * half;
        float* row = qkv.data() + std::size_t(row0[s] + i) * width;
        for (int head = 0; head < H + Hk; ++head) {
          float* v = row + std::size_t(head) * D;
          for (int k = 0; k < half; ++k) {
            const float a = v[k], b = v[k + half];
            v[k] = a * c[k] - b * sn[k];
            v[k + half] = a * sn[k] + b * c[k];
          }
        }
      }
    // Append this layer's post-RoPE keys and values to each sequence's cache.
    pool.parallel_for(steps.size(), [&](std::size_t s) {
      const int T = steps[s].count;
      std::vector<float> k(std::size_t(T) * Hk * D), v(std::size_t(T) * Hk * D);
      for (int i = 0; i < T; ++i) {
        const float* row = qkv.data() + std::size_t(row0[s] + i) * width;
        std::memcpy(k.data() + std::size_t(i) * Hk * D, row + std::size_t(H) * D, std::size_t(Hk) * D * sizeof(float));
        std::memcpy(v.data() + std::size_t(i) * Hk * D, row + std::size_t(H + Hk) * D, std::size_t(Hk) * D * sizeof(float));
      }
      steps[s].cache->append(li, steps[s].cache->length(), T, k.data(), v.data());
    });
    attention(pool, steps, row0, li, qkv.data(), att.data());
    matmul_xwt(pool, att.data(), L.wo.data(), tmp.data(), std::size_t(M), std::size_t(d), std::size_t(d));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
    for (int m = 0; m < M; ++m)
      rms_norm(x.data() + std::size_t(m) * d, L.ffn_norm.data(), h.data() + std::size_t(m) * d, d, cfg_.rms_eps);
    matmul_xwt(pool, h.data(), L.w_gate_up.data(), gu.data(), std::size_t(M), std::size_t(2 * cfg_.d_ff), std::size_t(d));
    for (int m = 0; m < M; ++m) {
      const float* g = gu.data() + std::size_t(m) * 2 * cfg_.d_ff;
      const float* u = g + cfg_.d_ff;
      float* a = act.data() + std::size_t(m) * cfg_.d_ff;
      for (int j = 0; j < cfg_.d_ff; ++j) a[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
    }
    matmul_xwt(pool, act.data(), L.w_down.data(), tmp.data(), std::size_t(M), std::size_t(d), std::size_t(cfg_.d_ff));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += tmp[i];
  }
  // Output head on the rows that need logits.
  std::vector<int> rows;
  for (std::size_t s = 0; s < steps.size(); ++s) {
    if (steps[s].all_logits)
      for (int i = 0; i < steps[s].count; ++i) rows.push_back(row0[s] + i);
    else if (steps[s].count > 0)
      rows.push_back(row0[s] + steps[s].count - 1);
  }
  std::vector<float> hs(rows.size() * std::size_t(d));
  for (std::size_t r = 0; r < rows.size(); ++r)
    rms_norm(x.data() + std::size_t(rows[r]) * d, output_norm_.data(), hs.data() + r * d, d, cfg_.rms_eps);
  logits.resize(rows.size() * std::size_t(cfg_.vocab));
  matmul_xwt(pool, hs.data(), cfg_.tied_embeddings ? embedding_.data() : output_.data(), logits.data(),
             rows.size(), std::size_t(cfg_.vocab), std::size_t(d));
  for (const auto& st : steps) st.cache->commit(st.count);
}

}  // namespace kvarn_eval
