#include "kv_store.hpp"

#include <cstring>
#include <sstream>

#include "ablation_codec.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_eval {

KvStore::KvStore(const KvConfig& config, int layers, int kv_heads, int head_dim, int capacity,
                 std::shared_ptr<kvarn_cl::Backend> backend)
    : config_(config), kv_heads_(kv_heads), head_dim_(head_dim), capacity_(capacity) {
  if (config_.library_cache) {
    if (!backend)
      throw kvarn_cl::InvalidArgument("config '" + config_.name + "' needs a backend (--backend cpu|opencl|auto)");
    if (config_.only_layer >= 0)
      throw kvarn_cl::InvalidArgument("config '" + config_.name + "': a one-layer calibration config cannot run through the library cache");
    kvarn_cl::CacheConfig cc;
    cc.codec = config_.codec;
    cc.layer_presets = config_.layer_presets;
    cc.recent_tokens = config_.recent;
    cc.num_layers = layers;
    cc.num_kv_heads = kv_heads;
    cc.max_sequences = 1;
    cc.max_tokens_per_sequence = capacity;
    cc.backend = std::move(backend);
    cache_ = std::make_unique<kvarn_cl::KVCache>(cc);
    seq_ = cache_->add_sequence();
    return;
  }
  const std::size_t n = std::size_t(capacity) * kv_heads * head_dim;
  layers_.resize(std::size_t(layers));
  for (auto& l : layers_) {
    if (config_.kind != KvKind::ggml) {
      l.exact_k.resize(n);
      l.exact_v.resize(n);
    }
    if (config_.kind == KvKind::ggml || config_.tiled()) {
      l.quant_k.resize(n);
      l.quant_v.resize(n);
    }
    if (config_.tiled()) {
      l.rows_k.resize(n);
      l.rows_v.resize(n);
    }
  }
}

const float* KvStore::quant_k(int layer) const {
  const auto& l = layers_[std::size_t(layer)];
  return l.quant_k.empty() ? l.exact_k.data() : l.quant_k.data();
}
const float* KvStore::quant_v(int layer) const {
  const auto& l = layers_[std::size_t(layer)];
  return l.quant_v.empty() ? l.exact_v.data() : l.quant_v.data();
}

int KvStore::boundary(int layer, int t) const {
  switch (config_.kind) {
    case KvKind::fp32:
    case KvKind::fp16: return 0;
    case KvKind::ggml: return t + 1;
    case KvKind::kvarn:
    case KvKind::ablation: {
      if (!config_.quantizes(layer)) return 0;
      // The sink tile and the quantized tiles after it, once t is appended.
      const int tiles = config_.quantized_tiles(t + 1);
      return tiles > 0 ? (tiles + 1) * config_.group() : 0;
    }
  }
  return 0;
}

namespace {

// llama.cpp's converter permutes each head's Q/K rows: its channel c is Hugging Face channel
// (c % 2)·(D/2) + c/2. These move a row between the two orders.
void to_llama_order(const float* hf, float* ll, int D) {
  for (int c = 0; c < D; ++c) ll[c] = hf[(c % 2) * (D / 2) + c / 2];
}
void from_llama_order(const float* ll, float* hf, int D) {
  for (int c = 0; c < D; ++c) hf[(c % 2) * (D / 2) + c / 2] = ll[c];
}

}  // namespace

// A row through a llama.cpp block type as llama.cpp stores it: in its channel order (keys and
// queries), Hadamard-rotated there if configured, quantized in blocks of 32, decoded, and brought
// back to the caller's frame (rotation and order undone; both are orthonormal, so dot products
// between rows treated alike are llama.cpp's).
static void ggml_row(GgmlKvType type, bool llama_order, bool rotate, const float* src, float* dst, int D) {
  thread_local std::vector<float> a, b;
  a.resize(std::size_t(D));
  b.resize(std::size_t(D));
  if (llama_order) to_llama_order(src, a.data(), D);
  else std::memcpy(a.data(), src, std::size_t(D) * sizeof(float));
  if (rotate) kvarn_cl::fwht_inplace(a.data(), D);
  ggml_round_trip(type, a.data(), b.data(), std::size_t(D));
  if (rotate) kvarn_cl::fwht_inplace(b.data(), D);
  if (llama_order) from_llama_order(b.data(), dst, D);
  else std::memcpy(dst, b.data(), std::size_t(D) * sizeof(float));
}

void KvStore::transform_query(const float* q, float* out) const {
  ggml_row(GgmlKvType::q8_0, config_.llama_order, config_.rotate, q, out, head_dim_);
}

void KvStore::append(int layer, int pos0, int T, const float* k, const float* v) {
  if (pos0 + T > capacity_) {
    std::ostringstream m;
    m << "KV store for config '" << config_.name << "' holds " << capacity_ << " positions; append of "
      << T << " at " << pos0 << " overflows";
    throw kvarn_cl::InvalidArgument(m.str());
  }
  if (cache_) {  // committed at once: complete tiles are quantized inside the library
    cache_->append(layer, {seq_}, {T}, k, v, kvarn_cl::AppendMode::commit);
    return;
  }
  Layer& l = layers_[std::size_t(layer)];
  const int D = head_dim_;
  const std::size_t row0 = std::size_t(pos0) * kv_heads_;
  const std::size_t rows = std::size_t(T) * kv_heads_;
  const std::size_t off = row0 * D, n = rows * D;
  switch (config_.kind) {
    case KvKind::fp32:
      std::memcpy(l.exact_k.data() + off, k, n * sizeof(float));
      std::memcpy(l.exact_v.data() + off, v, n * sizeof(float));
      break;
    case KvKind::fp16:
      for (std::size_t i = 0; i < n; ++i) {
        l.exact_k[off + i] = kvarn_cl::half_to_float(kvarn_cl::float_to_half(k[i]));
        l.exact_v[off + i] = kvarn_cl::half_to_float(kvarn_cl::float_to_half(v[i]));
      }
      break;
    case KvKind::ggml:
      for (std::size_t r = 0; r < rows; ++r) {
        // Keys in llama.cpp's permuted channel order; values are not permuted by its converter.
        ggml_row(config_.k_type, config_.llama_order, config_.rotate, k + r * D, l.quant_k.data() + off + r * D, D);
        ggml_row(config_.v_type, false, config_.rotate, v + r * D, l.quant_v.data() + off + r * D, D);
      }
      break;
    case KvKind::kvarn:
    case KvKind::ablation: {
      // fp16 rows as the codec receives them: rotated for KVarN, plain for the -norot/-plain rows.
      if (config_.rotate) {
        kvarn_cl::rotate_rows(k, l.rows_k.data() + off, rows, D);
        kvarn_cl::rotate_rows(v, l.rows_v.data() + off, rows, D);
      } else {
        kvarn_cl::floats_to_halves(k, l.rows_k.data() + off, n);
        kvarn_cl::floats_to_halves(v, l.rows_v.data() + off, n);
      }
      kvarn_cl::halves_to_floats(l.rows_k.data() + off, l.exact_k.data() + off, n);
      kvarn_cl::halves_to_floats(l.rows_v.data() + off, l.exact_v.data() + off, n);
      if (config_.rotate)
        for (std::size_t r = 0; r < rows; ++r) {
          kvarn_cl::fwht_inplace(l.exact_k.data() + off + r * D, D);
          kvarn_cl::fwht_inplace(l.exact_v.data() + off + r * D, D);
        }
      const int G = config_.group();
      // The sink tile is never quantized: its quantized view is the fp16 view.
      for (int p = pos0; p < pos0 + T && p < G; ++p) {
        const std::size_t o = std::size_t(p) * kv_heads_ * D;
        std::memcpy(l.quant_k.data() + o, l.exact_k.data() + o, std::size_t(kv_heads_) * D * sizeof(float));
        std::memcpy(l.quant_v.data() + o, l.exact_v.data() + o, std::size_t(kv_heads_) * D * sizeof(float));
      }
      if (!config_.quantizes(layer)) break;
      // Tile j+1 (tile 0 is the sink) is quantized once quantized_tiles() counts it.
      for (int j = config_.quantized_tiles(pos0); j < config_.quantized_tiles(pos0 + T); ++j)
        quantize_tile(layer, j + 1);
      break;
    }
  }
}

void KvStore::library_attend(int layer, int num_q_heads, const float* q, float* out) {
  cache_->attend(layer, {seq_}, num_q_heads, q, out);
}

void KvStore::quantize_tile(int layer, int tile) {
  Layer& l = layers_[std::size_t(layer)];
  const int G = config_.group(), D = head_dim_;
  const kvarn_cl::CodecParams codec = config_.codec_for(layer);
  const std::size_t tile_n = std::size_t(G) * D;
  std::vector<kvarn_cl::half_bits> k(tile_n), v(tile_n);
  std::vector<float> kq(tile_n), vq(tile_n);
  std::vector<std::uint8_t> record(config_.kind == KvKind::kvarn ? kvarn_cl::RecordLayout::make(codec).bytes : 0);
  for (int h = 0; h < kv_heads_; ++h) {
    for (int t = 0; t < G; ++t) {  // gather this head's rows: the store is [pos][head][D]
      const std::size_t src = (std::size_t(tile * G + t) * kv_heads_ + h) * D;
      std::memcpy(k.data() + std::size_t(t) * D, l.rows_k.data() + src, std::size_t(D) * 2);
      std::memcpy(v.data() + std::size_t(t) * D, l.rows_v.data() + src, std::size_t(D) * 2);
    }
    if (observer_) observer_(layer, h, tile, k.data(), v.data());
    if (config_.kind == KvKind::kvarn) {
      kvarn_cl::quantize_tile(codec, k.data(), v.data(), record.data());
      kvarn_cl::dequantize_tile(codec, record.data(), kq.data(), vq.data(), kvarn_cl::Frame::original);
    } else {
      ablation_round_trip(codec, config_.normalize, k.data(), v.data(), kq.data(), vq.data());
    }
    for (int t = 0; t < G; ++t) {
      const std::size_t dst = (std::size_t(tile * G + t) * kv_heads_ + h) * D;
      std::memcpy(l.quant_k.data() + dst, kq.data() + std::size_t(t) * D, std::size_t(D) * sizeof(float));
      std::memcpy(l.quant_v.data() + dst, vq.data() + std::size_t(t) * D, std::size_t(D) * sizeof(float));
    }
    ++tiles_quantized_;
  }
}

}  // namespace kvarn_eval
