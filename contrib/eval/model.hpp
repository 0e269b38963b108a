// A Llama-family decoder (the "llama" GGUF architecture: SmolLM2, TinyLlama, Llama 2/3 ...) run
// in fp32 on the CPU: RMSNorm, rotary embeddings, grouped-query attention over a KvStore, SwiGLU
// MLP, tied or separate output embeddings.
//
// Channel order: llama.cpp's converter permutes the rows of attn_q/attn_k so that its "normal"
// RoPE (rotating adjacent channel pairs) reproduces Hugging Face's rotate-half RoPE. We undo that
// permutation at load and apply rotate-half (NeoX-style) RoPE, so every key row has exactly the
// channel order Hugging Face models and vLLM produce and cache. Attention scores are identical
// either way; the order matters only for what the Hadamard rotation and per-channel scales see.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf.hpp"
#include "kv_store.hpp"
#include "thread_pool.hpp"

namespace kvarn_eval {

struct ModelConfig {
  std::string name;
  int layers = 0, d_model = 0, heads = 0, kv_heads = 0, head_dim = 0, d_ff = 0, vocab = 0;
  int train_context = 0;
  double rope_theta = 10000.0, rms_eps = 1e-5;
  bool tied_embeddings = false;
};

// One sequence's share of a forward batch: `count` new tokens at positions cache->length() on.
struct SequenceStep {
  KvStore* cache = nullptr;
  const std::int32_t* tokens = nullptr;
  int count = 0;
  bool all_logits = true;  // false: logits of the last token only
};

class Model {
 public:
  // Throws kvarn_cl::Unsupported for another architecture or a tensor type we cannot read.
  explicit Model(const GgufFile& file);

  const ModelConfig& config() const { return cfg_; }
  // Runs the new tokens of every step through the model, appends their K/V to each step's cache
  // (and commits them), and writes logits: for each step in order, `count` rows (all_logits) or
  // one row, each of vocab floats.
  void forward(ThreadPool& pool, const std::vector<SequenceStep>& steps, std::vector<float>& logits);
  // Largest position the rotary tables cover (grown on demand).
  void reserve_positions(int n);

 private:
  struct Layer {
    std::vector<float> attn_norm, ffn_norm;
    std::vector<float> wqkv;    // (heads + 2·kv_heads)·head_dim rows × d_model
    std::vector<float> wo;      // d_model × d_model
    std::vector<float> w_gate_up;  // 2·d_ff rows × d_model (gate rows, then up rows)
    std::vector<float> w_down;  // d_model × d_ff
  };
  void attention(ThreadPool& pool, const std::vector<SequenceStep>& steps,
                 const std::vector<int>& row0, int layer, const float* qkv, float* out) const;

  ModelConfig cfg_;
  std::vector<Layer> layers_;
  std::vector<float> embedding_;  // vocab × d_model
  std::vector<float> output_;     // vocab × d_model (empty when tied)
  std::vector<float> output_norm_;
  std::vector<float> rope_cos_, rope_sin_;  // [pos][head_dim/2]
  int rope_positions_ = 0;
};

}  // namespace kvarn_eval
