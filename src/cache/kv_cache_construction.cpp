// KVCache construction: the geometry derived from a checked CacheConfig, the up-front check that
// every pool fits the backend, and the allocation of every layer's pools (all of them at once, so
// a cache that cannot exist fails here rather than at some later append); the plain accessors.
#include <algorithm>
#include <cstdint>

#include "cache/error_message.hpp"
#include "cache/kv_cache_impl.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

namespace {

// a·b, or 0 with *overflow set, for the up-front size check.
std::size_t mul_checked(std::size_t a, std::size_t b, bool* overflow) {
  if (a != 0 && b > SIZE_MAX / a) {
    *overflow = true;
    return 0;
  }
  return a * b;
}

}  // namespace

void KVCache::Impl::check_total_size() const {
  bool overflow = false;
  const std::size_t slots_heads =
      mul_checked(std::size_t(cfg.max_sequences), std::size_t(Hk), &overflow);
  // Record bytes of one block in every layer (layers may use different presets). With very
  // many layers, the largest record of any preset stands for each (the total is refused anyway).
  std::size_t record_bytes = 0;
  if (cfg.num_layers <= (1 << 16)) {
    for (int l = 0; l < cfg.num_layers; ++l)
      record_bytes += RecordLayout::make(cfg.layer_codec(l)).bytes;
  } else {
    std::size_t largest = 0;
    for (Preset p : all_presets())
      largest =
          std::max(largest, RecordLayout::make({p, D, cfg.layer_codec(0).sinkhorn_iters}).bytes);
    record_bytes = mul_checked(largest, std::size_t(cfg.num_layers), &overflow);
  }
  const std::size_t records = mul_checked(
      mul_checked(std::size_t(pool_blocks), std::size_t(Hk), &overflow), record_bytes, &overflow);
  const std::size_t fp16_rows =
      mul_checked(slots_heads, std::size_t(sink_cap) + std::size_t(tail_cap), &overflow);
  const std::size_t fp16 =
      mul_checked(mul_checked(fp16_rows, 2 * row_bytes(), &overflow),  // K and V
                  std::size_t(cfg.num_layers), &overflow);
  if (records > SIZE_MAX - fp16) overflow = true;
  const std::size_t total = records + fp16;
  const std::size_t capacity = be->memory_capacity();
  if (overflow || (capacity != 0 && total > capacity))
    throw OutOfMemory(
        message("KVCache: ", cfg.num_layers, " layers × ", cfg.max_sequences, " sequences × ", Hk,
                " KV heads need ", overflow ? std::string("more than 2^64") : std::to_string(total),
                " bytes of pools, more than ", be->name(), " can hold (",
                capacity ? std::to_string(capacity) + " bytes" : std::string("unknown"),
                "); lower num_layers, max_sequences, max_tokens_per_sequence or pool_blocks"));
}

std::unique_ptr<Buffer> KVCache::Impl::allocate_pool(std::size_t bytes, const char* what,
                                                     int layer) {
  try {
    return be->allocate(std::max<std::size_t>(bytes, 1));
  } catch (const OutOfMemory& e) {
    throw OutOfMemory(message("KVCache: cannot allocate the ", what, " pool of layer ", layer, " (",
                              bytes, " bytes): ", e.what()));
  }
}

KVCache::KVCache(CacheConfig config) : impl_(std::make_unique<Impl>()) {
  config.validate();
  Impl& m = *impl_;
  m.cfg = std::move(config);
  m.be = m.cfg.backend;
  const RecordLayout first = RecordLayout::make(m.cfg.layer_codec(0));
  m.G = first.group;
  m.D = first.head_dim;
  m.Hk = m.cfg.num_kv_heads;
  m.sink_cap = m.cfg.sink_tokens < 0 ? m.G : m.cfg.sink_tokens;
  m.cfg.sink_tokens = m.sink_cap;
  m.recent = m.cfg.recent_tokens;
  // At most G-1 committed tokens wait for their tile, recent_tokens more are kept exact on
  // purpose, plus the uncommitted ones.
  m.tail_cap = m.G - 1 + m.recent + m.cfg.max_uncommitted;
  // Automatic pool: enough tiles for every sequence to reach max_tokens_per_sequence at once.
  const int tiles_per_sequence = std::max(0, m.cfg.max_tokens_per_sequence - m.sink_cap) / m.G;
  const long long blocks = m.cfg.pool_blocks > 0
                               ? m.cfg.pool_blocks
                               : (long long)tiles_per_sequence * m.cfg.max_sequences;
  if (blocks * m.Hk > 0x7fffffffLL)
    throw InvalidArgument(
        message("KVCache: pool of ", blocks, " blocks × ", m.Hk,
                " heads exceeds the int32 record ids; lower pool_blocks or max_sequences"));
  m.pool_blocks = int(blocks);
  m.check_total_size();
  m.pool = cache::BlockPool(m.pool_blocks);
  for (int s = m.cfg.max_sequences - 1; s >= 0; --s) m.free_slots.push_back(s);
  const std::size_t slots_heads = std::size_t(m.cfg.max_sequences) * m.Hk;
  for (int l = 0; l < m.cfg.num_layers; ++l) {
    Impl::LayerPools p;
    p.codec = m.cfg.layer_codec(l);
    p.layout = RecordLayout::make(p.codec);
    p.records = m.allocate_pool(std::size_t(m.pool_blocks) * m.Hk * p.layout.bytes, "record", l);
    p.sink_k = m.allocate_pool(slots_heads * m.sink_cap * m.row_bytes(), "sink K", l);
    p.sink_v = m.allocate_pool(slots_heads * m.sink_cap * m.row_bytes(), "sink V", l);
    p.tail_k = m.allocate_pool(slots_heads * m.tail_cap * m.row_bytes(), "tail K", l);
    p.tail_v = m.allocate_pool(slots_heads * m.tail_cap * m.row_bytes(), "tail V", l);
    m.layers.push_back(std::move(p));
  }
}

KVCache::~KVCache() = default;

const CacheConfig& KVCache::config() const noexcept { return impl_->cfg; }
const RecordLayout& KVCache::layout() const noexcept { return impl_->layers.front().layout; }
const RecordLayout& KVCache::layout(int layer) const {
  impl_->check_layer(layer, "layout");
  return impl_->layers[std::size_t(layer)].layout;
}
Backend& KVCache::backend() noexcept { return *impl_->be; }
int KVCache::sink_capacity() const noexcept { return impl_->sink_cap; }
int KVCache::tail_capacity() const noexcept { return impl_->tail_cap; }

}  // namespace kvarn_cl
