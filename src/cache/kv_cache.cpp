// KVCache (include/kvarn_cl/cache.hpp): sequence bookkeeping on the host, every byte of K/V on the
// backend, and every device operation issued in batches through the Backend interface.
//
// Append of T tokens to one layer, for a batch of sequences (all device calls batched):
//   1. host: validate, check finiteness, gather the rows per (sequence, head) into one staging
//      array; a (sequence, head) whose committed tail tokens complete a tile with the new ones gets
//      a gap of `a0` rows (its current tail length) in front of its new rows;
//   2. write + rotate (one call each for K and V) into the rotated staging rows;
//   3. copy_rows: old tail rows into the gaps, so every complete tile is G contiguous rows;
//   4. copy_rows: rows that stay fp16 go to the tail pool (and the sink pool while it fills);
//   5. quantize: one call over every complete tile of every sequence and head.
// Host state changes only after the device calls succeeded.
#include "kvarn_cl/cache.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "cache/block_pool.hpp"
#include "cache/workspace.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

namespace {

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

// a·b, or nullopt-like 0 with *overflow set, for the up-front size check.
std::size_t mul_checked(std::size_t a, std::size_t b, bool* overflow) {
  if (a != 0 && b > SIZE_MAX / a) {
    *overflow = true;
    return 0;
  }
  return a * b;
}

}  // namespace

CodecParams CacheConfig::layer_codec(int layer) const {
  CodecParams p = codec;
  if (!layer_presets.empty() && layer >= 0 && std::size_t(layer) < layer_presets.size())
    p.preset = layer_presets[std::size_t(layer)];
  return p;
}

void CacheConfig::validate() const {
  codec.validate();
  if (num_layers < 1) throw InvalidArgument(cat("invalid CacheConfig::num_layers ", num_layers, ": must be >= 1"));
  if (num_kv_heads < 1)
    throw InvalidArgument(cat("invalid CacheConfig::num_kv_heads ", num_kv_heads, ": must be >= 1"));
  if (max_sequences < 1)
    throw InvalidArgument(cat("invalid CacheConfig::max_sequences ", max_sequences, ": must be >= 1"));
  if (max_tokens_per_sequence < 1)
    throw InvalidArgument(cat("invalid CacheConfig::max_tokens_per_sequence ", max_tokens_per_sequence,
                              ": must be >= 1"));
  if (pool_blocks < 0)
    throw InvalidArgument(cat("invalid CacheConfig::pool_blocks ", pool_blocks, ": must be >= 0 (0 = automatic)"));
  if (sink_tokens < -1)
    throw InvalidArgument(cat("invalid CacheConfig::sink_tokens ", sink_tokens, ": must be >= 0, or -1 for one tile"));
  if (!layer_presets.empty()) {
    if (layer_presets.size() != std::size_t(num_layers))
      throw InvalidArgument(cat("invalid CacheConfig::layer_presets: ", layer_presets.size(),
                                " presets for num_layers ", num_layers, " (one per layer, or none)"));
    for (std::size_t l = 1; l < layer_presets.size(); ++l)
      if (preset_info(layer_presets[l]).group != preset_info(layer_presets[0]).group)
        throw InvalidArgument(cat("invalid CacheConfig::layer_presets[", l, "] ", to_string(layer_presets[l]),
                                  ": tile size ", preset_info(layer_presets[l]).group, " differs from layer 0's ",
                                  to_string(layer_presets[0]), " (", preset_info(layer_presets[0]).group,
                                  "); all layers share one tile size"));
  }
  const int G = layer_codec(0).group();
  if (recent_tokens < 0 || recent_tokens > 65536)
    throw InvalidArgument(cat("invalid CacheConfig::recent_tokens ", recent_tokens, ": must be in 0..65536"));
  if (max_uncommitted < 0 || max_uncommitted > G)
    throw InvalidArgument(cat("invalid CacheConfig::max_uncommitted ", max_uncommitted, ": must be in 0..", G,
                              " (the tile size of preset ", to_string(layer_codec(0).preset), ")"));
  if (!backend) throw InvalidArgument("invalid CacheConfig::backend: null (make_cpu_backend() or make_backend())");
}

struct KVCache::Impl {
  struct Sequence {
    SeqId id = 0;
    int slot = 0;
    std::vector<std::int32_t> blocks;  // shared by all layers: block j holds tile j
    std::vector<int> length;           // per layer, uncommitted included
    std::vector<int> committed;        // per layer
  };
  // One layer's codec geometry (its own preset) and its pools.
  struct LayerPools {
    CodecParams codec;
    RecordLayout layout;
    std::unique_ptr<Buffer> records, sink_k, sink_v, tail_k, tail_v;
  };

  CacheConfig cfg;
  std::shared_ptr<Backend> be;
  int G = 0, D = 0, Hk = 0, sink_cap = 0, tail_cap = 0, recent = 0, table_width = 0, pool_blocks = 0;
  std::vector<LayerPools> layers;
  cache::BlockPool pool{0};
  std::vector<int> free_slots;
  std::unordered_map<SeqId, Sequence> seqs;
  SeqId next_id = 1;
  cache::Workspace in_k, in_v, rot_k, rot_v, q_ws, out_ws, tables_ws, info_ws, deq_k, deq_v, mat_k,
      mat_v, lens_ws, shift_ws;
  // Misuse guard (a KVCache is not thread-safe): > 0 readers inside a const call, -1 a writer
  // inside a mutating call. A call that overlaps a writer, or a writer that overlaps anything,
  // throws InvalidArgument instead of racing on the state. One atomic operation per call.
  mutable std::atomic<int> users{0};
  mutable std::atomic<const char*> writer{nullptr};

  std::size_t row_bytes() const { return std::size_t(D) * 2; }
  std::size_t sink_row(int slot, int h, int pos) const {
    return (std::size_t(slot) * Hk + std::size_t(h)) * std::size_t(sink_cap) + std::size_t(pos);
  }
  std::size_t tail_row(int slot, int h, int pos) const {
    return (std::size_t(slot) * Hk + std::size_t(h)) * std::size_t(tail_cap) + std::size_t(pos);
  }
  // Tiles that are complete, committed and older than the recent window, hence quantized, for
  // `committed` tokens (window: the newest `window` committed tokens stay fp16).
  int tiles_for(int committed_tokens, int window) const {
    return committed_tokens > sink_cap + window ? (committed_tokens - sink_cap - window) / G : 0;
  }
  int tiles_for(int committed_tokens) const { return tiles_for(committed_tokens, recent); }
  int sink_len(const Sequence& s, int layer) const { return std::min(s.length[std::size_t(layer)], sink_cap); }
  int tail_len(const Sequence& s, int layer) const {
    const int len = s.length[std::size_t(layer)];
    return len > sink_cap ? len - sink_cap - tiles_for(s.committed[std::size_t(layer)]) * G : 0;
  }

  void check_layer(int layer, const char* fn) const {
    if (layer < 0 || layer >= cfg.num_layers)
      throw InvalidArgument(cat(fn, ": layer ", layer, " is outside [0, ", cfg.num_layers, ')'));
  }
  Sequence& find(SeqId id, const char* fn) {
    auto it = seqs.find(id);
    if (it == seqs.end()) throw InvalidArgument(cat(fn, ": unknown sequence id ", id));
    return it->second;
  }
  const Sequence& find(SeqId id, const char* fn) const { return const_cast<Impl*>(this)->find(id, fn); }

  // Before anything is allocated: the pools of every layer must fit the backend's memory (and
  // size_t), so a cache that cannot exist fails at construction instead of at some later append.
  void check_total_size() const {
    bool overflow = false;
    const std::size_t slots_heads = mul_checked(std::size_t(cfg.max_sequences), std::size_t(Hk), &overflow);
    // Record bytes of one block in every layer (layers may use different presets). With very
    // many layers, the largest record of any preset stands for each (the total is refused anyway).
    std::size_t record_bytes = 0;
    if (cfg.num_layers <= (1 << 16)) {
      for (int l = 0; l < cfg.num_layers; ++l) record_bytes += RecordLayout::make(cfg.layer_codec(l)).bytes;
    } else {
      std::size_t largest = 0;
      for (Preset p : all_presets())
        largest = std::max(largest, RecordLayout::make({p, D, cfg.layer_codec(0).sinkhorn_iters}).bytes);
      record_bytes = mul_checked(largest, std::size_t(cfg.num_layers), &overflow);
    }
    const std::size_t records = mul_checked(mul_checked(std::size_t(pool_blocks), std::size_t(Hk), &overflow),
                                            record_bytes, &overflow);
    const std::size_t fp16_rows = mul_checked(slots_heads, std::size_t(sink_cap) + std::size_t(tail_cap), &overflow);
    const std::size_t fp16 = mul_checked(mul_checked(fp16_rows, 2 * row_bytes(), &overflow),  // K and V
                                         std::size_t(cfg.num_layers), &overflow);
    if (records > SIZE_MAX - fp16) overflow = true;
    const std::size_t total = records + fp16;
    const std::size_t capacity = be->memory_capacity();
    if (overflow || (capacity != 0 && total > capacity))
      throw OutOfMemory(cat("KVCache: ", cfg.num_layers, " layers × ", cfg.max_sequences, " sequences × ", Hk,
                            " KV heads need ", overflow ? std::string("more than 2^64") : std::to_string(total),
                            " bytes of pools, more than ", be->name(), " can hold (",
                            capacity ? std::to_string(capacity) + " bytes" : std::string("unknown"),
                            "); lower num_layers, max_sequences, max_tokens_per_sequence or pool_blocks"));
  }

  std::unique_ptr<Buffer> allocate_pool(std::size_t bytes, const char* what, int layer) {
    try {
      return be->allocate(std::max<std::size_t>(bytes, 1));
    } catch (const OutOfMemory& e) {
      throw OutOfMemory(cat("KVCache: cannot allocate the ", what, " pool of layer ", layer, " (", bytes,
                            " bytes): ", e.what()));
    }
  }

  // Input rows of an append or an attend: host memory (checked for NaN/Inf on the host) or a
  // Buffer of this cache's backend (stays on the device; non-finite K/V are still caught by the
  // quantize kernels once their tile completes).
  struct Rows {
    const void* host = nullptr;
    const Buffer* device = nullptr;
  };
  void append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens, Rows k,
              Rows v, ElementType type, AppendMode mode);
  void commit(const std::vector<SeqId>& ids, const std::vector<int>& tokens);
  void attend(int layer, const std::vector<SeqId>& ids, int hq, Rows q, void* out, Buffer* out_device,
              ElementType out_type, float scale, AttendPath path);
  // Gathers the fp16 rotated rows of the listed sequences into mat_k/mat_v as
  // [S][Hk][capacity][D] and their lengths into lens; returns the capacity.
  int gather_fp16(int layer, const std::vector<const Sequence*>& batch, std::vector<std::int32_t>& lens);
};

namespace {

// Scope of one public call (KVCache::Impl::users).
class CallGuard {
 public:
  CallGuard(std::atomic<int>& users, std::atomic<const char*>& writer, const char* fn, bool writes)
      : users_(users), writer_(writer), writes_(writes) {
    if (writes) {
      int expected = 0;
      if (!users_.compare_exchange_strong(expected, -1, std::memory_order_acquire)) fail(fn, expected);
      writer_.store(fn, std::memory_order_relaxed);
    } else {
      int n = users_.load(std::memory_order_relaxed);
      do {
        if (n < 0) fail(fn, n);
      } while (!users_.compare_exchange_weak(n, n + 1, std::memory_order_acquire));
    }
  }
  ~CallGuard() {
    if (writes_) {
      writer_.store(nullptr, std::memory_order_relaxed);
      users_.store(0, std::memory_order_release);
    } else {
      users_.fetch_sub(1, std::memory_order_release);
    }
  }
  CallGuard(const CallGuard&) = delete;
  CallGuard& operator=(const CallGuard&) = delete;

 private:
  [[noreturn]] void fail(const char* fn, int state) const {
    const char* other = writer_.load(std::memory_order_relaxed);
    throw InvalidArgument(cat("KVCache::", fn, " called while another thread is inside ",
                              state < 0 && other ? cat("KVCache::", other) : std::string("a call"),
                              " on the same cache: a KVCache must not be used from two threads at "
                              "once (use one cache per thread, or a lock)"));
  }
  std::atomic<int>& users_;
  std::atomic<const char*>& writer_;
  bool writes_;
};

}  // namespace

#define KVARN_CL_CACHE_CALL(fn, writes) const CallGuard guard_(impl_->users, impl_->writer, fn, writes)

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
  m.tail_cap = m.G - 1 + m.recent + m.cfg.max_uncommitted;
  m.table_width = std::max(0, m.cfg.max_tokens_per_sequence - m.sink_cap) / m.G;
  const long long blocks = m.cfg.pool_blocks > 0 ? m.cfg.pool_blocks
                                                 : (long long)m.table_width * m.cfg.max_sequences;
  if (blocks * m.Hk > 0x7fffffffLL)
    throw InvalidArgument(cat("KVCache: pool of ", blocks, " blocks × ", m.Hk,
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

SeqId KVCache::add_sequence() {
  KVARN_CL_CACHE_CALL("add_sequence", true);
  Impl& m = *impl_;
  if (m.free_slots.empty())
    throw OutOfMemory(cat("KVCache::add_sequence: all ", m.cfg.max_sequences,
                          " sequence slots (CacheConfig::max_sequences) are in use"));
  Impl::Sequence s;
  s.id = m.next_id++;
  s.slot = m.free_slots.back();
  s.length.assign(std::size_t(m.cfg.num_layers), 0);
  s.committed.assign(std::size_t(m.cfg.num_layers), 0);
  m.free_slots.pop_back();
  const SeqId id = s.id;
  m.seqs.emplace(id, std::move(s));
  return id;
}

void KVCache::free_sequence(SeqId id) {
  KVARN_CL_CACHE_CALL("free_sequence", true);
  Impl& m = *impl_;
  Impl::Sequence& s = m.find(id, "free_sequence");
  for (std::int32_t b : s.blocks) m.pool.give_back(b);
  m.free_slots.push_back(s.slot);
  m.seqs.erase(id);
}

bool KVCache::contains(SeqId id) const noexcept { return impl_->seqs.count(id) != 0; }
std::size_t KVCache::num_sequences() const noexcept { return impl_->seqs.size(); }

int KVCache::length(SeqId id, int layer) const {
  KVARN_CL_CACHE_CALL("length", false);
  impl_->check_layer(layer, "length");
  return impl_->find(id, "length").length[std::size_t(layer)];
}
int KVCache::committed(SeqId id, int layer) const {
  KVARN_CL_CACHE_CALL("committed", false);
  impl_->check_layer(layer, "committed");
  return impl_->find(id, "committed").committed[std::size_t(layer)];
}
int KVCache::quantized_tiles(SeqId id, int layer) const {
  KVARN_CL_CACHE_CALL("quantized_tiles", false);
  impl_->check_layer(layer, "quantized_tiles");
  return impl_->tiles_for(impl_->find(id, "quantized_tiles").committed[std::size_t(layer)]);
}

// --- append ------------------------------------------------------------------------------------

void KVCache::append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens,
                     const float* k, const float* v, AppendMode mode) {
  KVARN_CL_CACHE_CALL("append", true);
  impl_->append(layer, ids, tokens, {k, nullptr}, {v, nullptr}, ElementType::f32, mode);
}
void KVCache::append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens,
                     const half_bits* k, const half_bits* v, AppendMode mode) {
  KVARN_CL_CACHE_CALL("append", true);
  impl_->append(layer, ids, tokens, {k, nullptr}, {v, nullptr}, ElementType::f16, mode);
}
void KVCache::append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens,
                     const void* k, const void* v, ElementType type, AppendMode mode) {
  KVARN_CL_CACHE_CALL("append", true);
  impl_->append(layer, ids, tokens, {k, nullptr}, {v, nullptr}, type, mode);
}
void KVCache::append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens,
                     const Buffer& k, const Buffer& v, ElementType type, AppendMode mode) {
  KVARN_CL_CACHE_CALL("append", true);
  impl_->append(layer, ids, tokens, {nullptr, &k}, {nullptr, &v}, type, mode);
}

namespace {

// Checks one host input row: finite, and small enough that no rotated channel exceeds the codec's
// bound kMaxRotatedMagnitude (a rotated channel is at most the row's L2 norm), so its fp16 rows
// and every record quantized from them stay finite. Throws NonFiniteInput.
template <typename T>
void check_row(const T* row, int D, const char* which, std::size_t entry, int token, int head) {
  double sq = 0;
  for (int d = 0; d < D; ++d) {
    const float x = std::is_same<T, float>::value ? float(row[d]) : half_to_float(half_bits(row[d]));
    if (!std::isfinite(x))
      throw NonFiniteInput(cat("append: ", which, " of batch entry ", entry, ", token ", token, ", head ",
                               head, ", channel ", d, " is ", x));
    sq += double(x) * x;
  }
  if (std::sqrt(sq) > double(kMaxRotatedMagnitude))
    throw NonFiniteInput(cat("append: ", which, " row of batch entry ", entry, ", token ", token, ", head ",
                             head, " has L2 norm ", std::sqrt(sq), " > ", kMaxRotatedMagnitude,
                             ": its rotation could overflow fp16 once quantized (the codec's bound)"));
}

}  // namespace

void KVCache::Impl::append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens,
                           Rows k_rows, Rows v_rows, ElementType type, AppendMode mode) {
  check_layer(layer, "append");
  if (ids.empty()) throw InvalidArgument("append: seq_ids is empty");
  if (ids.size() != tokens.size())
    throw InvalidArgument(cat("append: seq_ids has ", ids.size(), " entries but tokens has ", tokens.size()));
  const bool on_device = k_rows.device != nullptr;
  if ((on_device ? (v_rows.device == nullptr) : (k_rows.host == nullptr || v_rows.host == nullptr)))
    throw InvalidArgument("append: k or v is null");
  const void* k = k_rows.host;
  const void* v = v_rows.host;
  const std::size_t elem = type == ElementType::f32 ? 4 : 2;
  const std::size_t l = std::size_t(layer);

  struct Plan {
    Sequence* s;
    int T, L0, n_sink, n_t, a0, q0, new_tiles, gap;
    std::size_t in_row;   // first input row ([T][Hk] rows of this entry)
    std::size_t region;   // first staging row of head 0; head h at region + h*(gap+T)
  };
  std::vector<Plan> plans;
  plans.reserve(ids.size());
  std::unordered_set<SeqId> seen;
  std::size_t in_rows = 0, staging_rows = 0, blocks_needed = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Plan p{};
    p.s = &find(ids[i], "append");
    if (!seen.insert(ids[i]).second)
      throw InvalidArgument(cat("append: sequence id ", ids[i], " is listed twice (batch entry ", i, ')'));
    p.T = tokens[i];
    if (p.T < 1) throw InvalidArgument(cat("append: tokens[", i, "] = ", p.T, ": must be >= 1"));
    p.L0 = p.s->length[l];
    const int C0 = p.s->committed[l];
    if (p.L0 + (long long)p.T > cfg.max_tokens_per_sequence)
      throw InvalidArgument(cat("append: sequence ", ids[i], " would hold ", p.L0 + (long long)p.T,
                                " tokens in layer ", layer, ", more than max_tokens_per_sequence ",
                                cfg.max_tokens_per_sequence));
    if (mode == AppendMode::commit && p.L0 != C0)
      throw InvalidArgument(cat("append: sequence ", ids[i], " has ", p.L0 - C0, " uncommitted tokens in layer ",
                                layer, "; commit or roll them back before a committed append"));
    if (mode == AppendMode::speculative && p.L0 - C0 + p.T > cfg.max_uncommitted)
      throw InvalidArgument(cat("append: sequence ", ids[i], " would hold ", p.L0 - C0 + p.T,
                                " uncommitted tokens in layer ", layer, ", more than max_uncommitted ",
                                cfg.max_uncommitted));
    p.n_sink = std::clamp(sink_cap - p.L0, 0, p.T);
    p.n_t = p.T - p.n_sink;
    p.q0 = tiles_for(C0);
    p.a0 = std::max(0, p.L0 + p.n_sink - sink_cap) - p.q0 * G;
    p.new_tiles = mode == AppendMode::commit ? tiles_for(C0 + p.T) - p.q0 : 0;
    p.gap = p.new_tiles > 0 ? p.a0 : 0;
    if (p.new_tiles == 0 && p.a0 + p.n_t > tail_cap)
      throw Error(Status::internal, cat("append: tail overflow (", p.a0 + p.n_t, " > ", tail_cap, ')'));
    for (int j = p.q0; j < p.q0 + p.new_tiles; ++j)
      if (std::size_t(j) >= p.s->blocks.size()) ++blocks_needed;
    p.in_row = in_rows;
    p.region = staging_rows;
    in_rows += std::size_t(p.T) * Hk;
    staging_rows += std::size_t(p.gap + p.T) * Hk;
    plans.push_back(p);
  }
  if (blocks_needed > pool.free_count())
    throw OutOfMemory(cat("append: the block pool is exhausted: this append needs ", blocks_needed,
                          " new blocks but ", pool.free_count(), " of ", pool.capacity(),
                          " are free (CacheConfig::pool_blocks); free sequences or enlarge the pool"));
  if (staging_rows > 0xffffffffULL)
    throw InvalidArgument(cat("append: ", staging_rows, " staging rows exceed 2^32; split the append"));

  // 1. Staging: every input row to its place ([head][gap + T] per entry, the gap left for the old
  // tail rows). Host input is checked for NaN/Inf here; device input is placed by one copy_rows.
  const std::size_t row_in = std::size_t(D) * elem;
  std::vector<unsigned char> host_k, host_v;
  std::vector<RowRun> stage_runs;
  if (on_device) {
    for (const Buffer* b : {k_rows.device, v_rows.device})
      if (b->size() < in_rows * row_in)
        throw InvalidArgument(cat("append: the ", b == k_rows.device ? "k" : "v", " buffer holds ", b->size(),
                                  " bytes but the batch needs ", in_rows * row_in, " (", in_rows,
                                  " rows of ", row_in, " bytes)"));
    for (const Plan& p : plans)
      for (int h = 0; h < Hk; ++h)
        for (int t = 0; t < p.T; ++t)
          stage_runs.push_back({p.in_row + std::size_t(t) * Hk + std::size_t(h),
                                p.region + std::size_t(h) * (p.gap + p.T) + std::size_t(p.gap + t), 1});
  } else {
    host_k.assign(staging_rows * row_in, 0);
    host_v.assign(staging_rows * row_in, 0);
    for (std::size_t i = 0; i < plans.size(); ++i) {
      const Plan& p = plans[i];
      for (int h = 0; h < Hk; ++h)
        for (int t = 0; t < p.T; ++t) {
          const std::size_t src = (p.in_row + std::size_t(t) * Hk + std::size_t(h)) * row_in;
          const std::size_t dst = (p.region + std::size_t(h) * (p.gap + p.T) + std::size_t(p.gap + t)) * row_in;
          const unsigned char* ks = static_cast<const unsigned char*>(k) + src;
          const unsigned char* vs = static_cast<const unsigned char*>(v) + src;
          if (type == ElementType::f32) {
            check_row(reinterpret_cast<const float*>(ks), D, "k", i, t, h);
            check_row(reinterpret_cast<const float*>(vs), D, "v", i, t, h);
          } else {
            check_row(reinterpret_cast<const half_bits*>(ks), D, "k", i, t, h);
            check_row(reinterpret_cast<const half_bits*>(vs), D, "v", i, t, h);
          }
          std::memcpy(host_k.data() + dst, ks, row_in);
          std::memcpy(host_v.data() + dst, vs, row_in);
        }
    }
  }

  // Row runs and quantize jobs.
  std::vector<RowRun> gap_fill, to_tail, to_sink;
  std::vector<QuantizeJob> jobs;
  std::vector<std::int32_t> taken;  // blocks taken from the pool by this append
  std::vector<std::vector<std::int32_t>> new_blocks(plans.size());
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const Plan& p = plans[i];
    for (int j = p.q0; j < p.q0 + p.new_tiles; ++j) {
      if (std::size_t(j) < p.s->blocks.size()) continue;
      new_blocks[i].push_back(pool.take());
      taken.push_back(new_blocks[i].back());
    }
    const int slot = p.s->slot;
    for (int h = 0; h < Hk; ++h) {
      const std::size_t region = p.region + std::size_t(h) * (p.gap + p.T);
      if (p.n_sink > 0) to_sink.push_back({region, sink_row(slot, h, p.L0), std::uint64_t(p.n_sink)});
      if (p.new_tiles == 0) {
        if (p.n_t > 0) to_tail.push_back({region + p.n_sink, tail_row(slot, h, p.a0), std::uint64_t(p.n_t)});
        continue;
      }
      // The tail-space stream (old tail rows, then the new tail rows) starts at region + n_sink;
      // a gap (a0 > 0) only exists when the sink is already full (n_sink = 0).
      const std::size_t stream = region + std::size_t(p.n_sink);
      if (p.gap > 0) gap_fill.push_back({tail_row(slot, h, 0), stream, std::uint64_t(p.gap)});
      for (int j = 0; j < p.new_tiles; ++j) {
        const int tile = p.q0 + j;
        const std::int32_t block = std::size_t(tile) < p.s->blocks.size()
                                       ? p.s->blocks[std::size_t(tile)]
                                       : new_blocks[i][std::size_t(tile) - p.s->blocks.size()];
        jobs.push_back({std::uint32_t(stream + std::size_t(j) * G), std::uint32_t(block * Hk + h)});
      }
      const int leftover = p.a0 + p.n_t - p.new_tiles * G;
      if (leftover > 0)
        to_tail.push_back({stream + std::size_t(p.new_tiles) * G, tail_row(slot, h, 0), std::uint64_t(leftover)});
    }
  }

  try {
    // 2. Upload and rotate.
    Buffer& ik = in_k.ensure(*be, staging_rows * row_in);
    Buffer& iv = in_v.ensure(*be, staging_rows * row_in);
    Buffer& rk = rot_k.ensure(*be, staging_rows * row_bytes());
    Buffer& rv = rot_v.ensure(*be, staging_rows * row_bytes());
    if (on_device) {
      be->copy_rows(*k_rows.device, ik, stage_runs, row_in);
      be->copy_rows(*v_rows.device, iv, stage_runs, row_in);
    } else {
      be->write(ik, 0, host_k.data(), host_k.size());
      be->write(iv, 0, host_v.data(), host_v.size());
    }
    LayerPools& pools = layers[l];
    be->rotate(pools.codec, ik, type, staging_rows, rk, 0);
    be->rotate(pools.codec, iv, type, staging_rows, rv, 0);
    // 3. Old tail rows into the gaps (before step 4 overwrites the tail's first rows).
    if (!gap_fill.empty()) {
      be->copy_rows(*pools.tail_k, rk, gap_fill, row_bytes());
      be->copy_rows(*pools.tail_v, rv, gap_fill, row_bytes());
    }
    // Device-resident rows were never seen by the host: check the rotated staging rows (new rows,
    // and old tail rows that passed this check before) before anything is stored.
    if (on_device)
      for (Buffer* rows : {&rk, &rv}) {
        const std::int64_t bad = be->first_row_out_of_range(*rows, staging_rows, D, kMaxRotatedMagnitude);
        if (bad < 0) continue;
        // Staging row -> (batch entry, head, token) of the input.
        std::size_t i = 0;
        while (i + 1 < plans.size() && plans[i + 1].region <= std::size_t(bad)) ++i;
        const Plan& p = plans[i];
        const std::size_t in_region = std::size_t(bad) - p.region, width = std::size_t(p.gap + p.T);
        throw NonFiniteInput(cat("append: the rotated ", rows == &rk ? "k" : "v", " row of batch entry ", i,
                                 ", token ", long(in_region % width) - p.gap, ", head ", in_region / width,
                                 " (device-resident input) holds NaN, Inf or a value beyond ",
                                 kMaxRotatedMagnitude, " (the codec's bound): nothing was stored"));
      }
    // 4. fp16 rows to their pools.
    if (!to_tail.empty()) {
      be->copy_rows(rk, *pools.tail_k, to_tail, row_bytes());
      be->copy_rows(rv, *pools.tail_v, to_tail, row_bytes());
    }
    if (!to_sink.empty()) {
      be->copy_rows(rk, *pools.sink_k, to_sink, row_bytes());
      be->copy_rows(rv, *pools.sink_v, to_sink, row_bytes());
    }
    // 5. One quantize for every complete tile of the batch.
    if (!jobs.empty()) be->quantize(pools.codec, rk, rv, jobs, *pools.records);
  } catch (...) {
    for (std::int32_t b : taken) pool.give_back(b);
    throw;
  }

  for (std::size_t i = 0; i < plans.size(); ++i) {
    Plan& p = plans[i];
    p.s->blocks.insert(p.s->blocks.end(), new_blocks[i].begin(), new_blocks[i].end());
    p.s->length[l] += p.T;
    if (mode == AppendMode::commit) p.s->committed[l] += p.T;
  }
}

// --- commit / rollback -------------------------------------------------------------------------

void KVCache::commit(const std::vector<SeqId>& ids, const std::vector<int>& tokens) {
  KVARN_CL_CACHE_CALL("commit", true);
  impl_->commit(ids, tokens);
}
void KVCache::commit(SeqId id, int tokens) {
  KVARN_CL_CACHE_CALL("commit", true);
  impl_->commit({id}, {tokens});
}

void KVCache::Impl::commit(const std::vector<SeqId>& ids, const std::vector<int>& tokens) {
  if (ids.size() != tokens.size())
    throw InvalidArgument(cat("commit: seq_ids has ", ids.size(), " entries but tokens has ", tokens.size()));
  const std::size_t NL = std::size_t(cfg.num_layers);
  std::vector<Sequence*> batch;
  std::vector<std::vector<int>> target(ids.size(), std::vector<int>(NL));
  std::unordered_set<SeqId> seen;
  std::size_t blocks_needed = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    Sequence& s = find(ids[i], "commit");
    if (!seen.insert(ids[i]).second)
      throw InvalidArgument(cat("commit: sequence id ", ids[i], " is listed twice (entry ", i, ')'));
    if (tokens[i] < -1)
      throw InvalidArgument(cat("commit: tokens[", i, "] = ", tokens[i], ": must be >= 0, or -1 for all"));
    int max_tiles = int(s.blocks.size());
    for (std::size_t l = 0; l < NL; ++l) {
      const int u = s.length[l] - s.committed[l];
      const int n = tokens[i] == -1 ? u : tokens[i];
      if (n > u)
        throw InvalidArgument(cat("commit: tokens[", i, "] = ", n, " but sequence ", ids[i], " has only ", u,
                                  " uncommitted tokens in layer ", l));
      target[i][l] = s.committed[l] + n;
      max_tiles = std::max(max_tiles, tiles_for(target[i][l]));
    }
    blocks_needed += std::size_t(max_tiles) - s.blocks.size();
    batch.push_back(&s);
  }
  if (blocks_needed > pool.free_count())
    throw OutOfMemory(cat("commit: the block pool is exhausted: needs ", blocks_needed, " new blocks but ",
                          pool.free_count(), " of ", pool.capacity(), " are free (CacheConfig::pool_blocks)"));
  std::vector<std::size_t> old_size(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Sequence& s = *batch[i];
    old_size[i] = s.blocks.size();
    int max_tiles = int(s.blocks.size());
    for (std::size_t l = 0; l < NL; ++l) max_tiles = std::max(max_tiles, tiles_for(target[i][l]));
    while (int(s.blocks.size()) < max_tiles) s.blocks.push_back(pool.take());
  }
  try {
    // Per layer: quantize the tiles that became complete, in place in the tail pool, then move
    // the remaining tail rows to the front. Without a recent window the runs never overlap (the
    // remainder holds fewer than max_uncommitted <= G rows and starts at least G rows in); with
    // one, an overlapping remainder moves through a workspace.
    for (std::size_t l = 0; l < NL; ++l) {
      std::vector<QuantizeJob> jobs;
      std::vector<RowRun> shift;
      bool overlap = false;
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Sequence& s = *batch[i];
        const int q0 = tiles_for(s.committed[l]), q1 = tiles_for(target[i][l]);
        if (q1 == q0) continue;
        const int tl = tail_len(s, int(l));
        for (int h = 0; h < Hk; ++h) {
          for (int j = q0; j < q1; ++j)
            jobs.push_back({std::uint32_t(tail_row(s.slot, h, (j - q0) * G)),
                            std::uint32_t(s.blocks[std::size_t(j)] * Hk + h)});
          const int rest = tl - (q1 - q0) * G;
          if (rest > 0) shift.push_back({tail_row(s.slot, h, (q1 - q0) * G), tail_row(s.slot, h, 0), std::uint64_t(rest)});
          overlap = overlap || rest > (q1 - q0) * G;
        }
      }
      if (jobs.empty()) continue;
      LayerPools& pools = layers[l];
      be->quantize(pools.codec, *pools.tail_k, *pools.tail_v, jobs, *pools.records);
      if (!shift.empty() && !overlap) {
        be->copy_rows(*pools.tail_k, *pools.tail_k, shift, row_bytes());
        be->copy_rows(*pools.tail_v, *pools.tail_v, shift, row_bytes());
      } else if (!shift.empty()) {
        std::vector<RowRun> out, back;
        std::uint64_t at = 0;
        for (const RowRun& r : shift) {
          out.push_back({r.src_row, at, r.rows});
          back.push_back({at, r.dst_row, r.rows});
          at += r.rows;
        }
        Buffer& ws = shift_ws.ensure(*be, std::size_t(at) * row_bytes());
        for (Buffer* t : {pools.tail_k.get(), pools.tail_v.get()}) {
          be->copy_rows(*t, ws, out, row_bytes());
          be->copy_rows(ws, *t, back, row_bytes());
        }
      }
      for (std::size_t i = 0; i < batch.size(); ++i) batch[i]->committed[l] = target[i][l];
    }
  } catch (...) {
    // Layers already done keep their new state (their tail rows moved); blocks no layer uses go back.
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Sequence& s = *batch[i];
      int used = int(old_size[i]);
      for (std::size_t l = 0; l < NL; ++l) used = std::max(used, tiles_for(s.committed[l]));
      while (int(s.blocks.size()) > used) {
        pool.give_back(s.blocks.back());
        s.blocks.pop_back();
      }
    }
    throw;
  }
  for (std::size_t i = 0; i < batch.size(); ++i)
    for (std::size_t l = 0; l < NL; ++l) batch[i]->committed[l] = target[i][l];
}

void KVCache::rollback(SeqId id) {
  KVARN_CL_CACHE_CALL("rollback", true);
  Impl::Sequence& s = impl_->find(id, "rollback");
  // Uncommitted tokens were never quantized: dropping them only shortens the sink/tail.
  s.length = s.committed;
}

// --- attention ---------------------------------------------------------------------------------

void KVCache::attend(int layer, const std::vector<SeqId>& ids, int hq, const float* q, float* out,
                     float scale, AttendPath path) {
  KVARN_CL_CACHE_CALL("attend", true);
  impl_->attend(layer, ids, hq, {q, nullptr}, out, nullptr, ElementType::f32, scale, path);
}
void KVCache::attend(int layer, const std::vector<SeqId>& ids, int hq, const float* q, half_bits* out,
                     float scale, AttendPath path) {
  KVARN_CL_CACHE_CALL("attend", true);
  impl_->attend(layer, ids, hq, {q, nullptr}, out, nullptr, ElementType::f16, scale, path);
}
void KVCache::attend(int layer, const std::vector<SeqId>& ids, int hq, const Buffer& q, Buffer& out,
                     ElementType out_type, float scale, AttendPath path) {
  KVARN_CL_CACHE_CALL("attend", true);
  impl_->attend(layer, ids, hq, {nullptr, &q}, nullptr, &out, out_type, scale, path);
}

int KVCache::Impl::gather_fp16(int layer, const std::vector<const Sequence*>& batch,
                               std::vector<std::int32_t>& lens) {
  const std::size_t l = std::size_t(layer);
  int cap = 1;
  lens.clear();
  for (const Sequence* s : batch) {
    lens.push_back(s->length[l]);
    cap = std::max(cap, s->length[l]);
  }
  std::vector<std::uint32_t> ids;
  std::vector<RowRun> sink_runs, deq_runs, tail_runs;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Sequence& s = *batch[i];
    const int sl = sink_len(s, layer), nb = tiles_for(s.committed[l]), tl = tail_len(s, layer);
    for (int h = 0; h < Hk; ++h) {
      const std::size_t dst = (i * Hk + std::size_t(h)) * std::size_t(cap);
      if (sl > 0) sink_runs.push_back({sink_row(s.slot, h, 0), dst, std::uint64_t(sl)});
      if (nb > 0) deq_runs.push_back({ids.size() * G, dst + sl, std::uint64_t(nb) * G});
      for (int j = 0; j < nb; ++j) ids.push_back(std::uint32_t(s.blocks[std::size_t(j)] * Hk + h));
      if (tl > 0) tail_runs.push_back({tail_row(s.slot, h, 0), dst + sl + std::size_t(nb) * G, std::uint64_t(tl)});
    }
  }
  const std::size_t mat_bytes = batch.size() * Hk * std::size_t(cap) * row_bytes();
  Buffer& mk = mat_k.ensure(*be, mat_bytes);
  Buffer& mv = mat_v.ensure(*be, mat_bytes);
  LayerPools& pools = layers[l];
  if (!ids.empty()) {
    Buffer& dk = deq_k.ensure(*be, ids.size() * G * row_bytes());
    Buffer& dv = deq_v.ensure(*be, ids.size() * G * row_bytes());
    be->dequantize(pools.codec, *pools.records, ids, Frame::rotated, dk, dv);
    be->copy_rows(dk, mk, deq_runs, row_bytes());
    be->copy_rows(dv, mv, deq_runs, row_bytes());
  }
  if (!sink_runs.empty()) {
    be->copy_rows(*pools.sink_k, mk, sink_runs, row_bytes());
    be->copy_rows(*pools.sink_v, mv, sink_runs, row_bytes());
  }
  if (!tail_runs.empty()) {
    be->copy_rows(*pools.tail_k, mk, tail_runs, row_bytes());
    be->copy_rows(*pools.tail_v, mv, tail_runs, row_bytes());
  }
  return cap;
}

void KVCache::Impl::attend(int layer, const std::vector<SeqId>& ids, int hq, Rows q_rows, void* out,
                           Buffer* out_device, ElementType out_type, float scale, AttendPath path) {
  const float* q = static_cast<const float*>(q_rows.host);
  const bool on_device = q_rows.device != nullptr;
  check_layer(layer, "attend");
  if (ids.empty()) throw InvalidArgument("attend: seq_ids is empty");
  if (hq < 1 || hq % Hk != 0)
    throw InvalidArgument(cat("attend: num_q_heads ", hq, " is not a positive multiple of num_kv_heads ", Hk));
  if (on_device ? out_device == nullptr : (q == nullptr || out == nullptr))
    throw InvalidArgument("attend: q or out is null");
  if (!std::isfinite(scale) || scale < 0)
    throw InvalidArgument(cat("attend: scale ", scale, " must be finite and >= 0 (0 = 1/sqrt(head_dim))"));
  if (scale == 0) scale = 1.0f / std::sqrt(float(D));
  const std::size_t S = ids.size(), l = std::size_t(layer);
  const std::size_t q_values = S * std::size_t(hq) * D;
  for (std::size_t i = 0; !on_device && i < q_values; ++i)
    if (!std::isfinite(q[i]))
      throw NonFiniteInput(cat("attend: q[", i / (std::size_t(hq) * D), "][", (i / D) % hq, "][", i % D, "] is ", q[i]));

  std::vector<const Sequence*> batch;
  int max_nb = 0;
  for (std::size_t i = 0; i < S; ++i) {
    const Sequence& s = find(ids[i], "attend");
    if (s.length[l] == 0)
      throw InvalidArgument(cat("attend: sequence ", ids[i], " has no tokens in layer ", layer));
    batch.push_back(&s);
    max_nb = std::max(max_nb, tiles_for(s.committed[l]));
  }
  const std::size_t out_bytes = q_values * (out_type == ElementType::f32 ? 4 : 2);
  if (on_device && q_rows.device->size() < q_values * 4)
    throw InvalidArgument(cat("attend: the q buffer holds ", q_rows.device->size(), " bytes but ", S, " x ", hq,
                              " x ", D, " f32 values need ", q_values * 4));
  if (on_device && out_device->size() < out_bytes)
    throw InvalidArgument(cat("attend: the out buffer holds ", out_device->size(), " bytes but the output needs ",
                              out_bytes));
  // Host queries and outputs go through workspaces; device ones are used where they are.
  const Buffer& qb = on_device ? *q_rows.device : q_ws.ensure(*be, q_values * 4);
  Buffer& ob = on_device ? *out_device : out_ws.ensure(*be, out_bytes);
  // Uploads do not wait for the queue (the previous layer's kernels may still run); the one
  // wait of a host-side call is the read of its output.
  if (!on_device) be->write_async(q_ws.ensure(*be, q_values * 4), 0, q, q_values * 4);

  if (path == AttendPath::materialize) {
    std::vector<std::int32_t> lens;
    const int cap = gather_fp16(layer, batch, lens);
    Buffer& lb = lens_ws.ensure(*be, lens.size() * 4);
    be->write_async(lb, 0, lens.data(), lens.size() * 4);
    AttendFp16Args a;
    a.num_seqs = int(S);
    a.num_q_heads = hq;
    a.num_kv_heads = Hk;
    a.head_dim = D;
    a.scale = scale;
    a.q = &qb;
    a.out = &ob;
    a.out_type = out_type;
    a.k = &mat_k.ensure(*be, 0);
    a.v = &mat_v.ensure(*be, 0);
    a.capacity = cap;
    a.seq_lens = &lb;
    a.host_seq_lens = lens.data();
    a.kv_frame = Frame::rotated;
    be->attend_fp16(a);
  } else {
    const int width = std::max(1, max_nb);
    std::vector<std::int32_t> tables(S * std::size_t(width), 0);
    std::vector<SeqInfo> info(S);
    for (std::size_t i = 0; i < S; ++i) {
      const Sequence& s = *batch[i];
      const int nb = tiles_for(s.committed[l]);
      std::copy(s.blocks.begin(), s.blocks.begin() + nb, tables.begin() + std::ptrdiff_t(i * width));
      info[i] = SeqInfo{s.slot, sink_len(s, layer), nb, tail_len(s, layer)};
    }
    Buffer& tb = tables_ws.ensure(*be, tables.size() * 4);
    Buffer& ib = info_ws.ensure(*be, info.size() * sizeof(SeqInfo));
    be->write_async(tb, 0, tables.data(), tables.size() * 4);
    be->write_async(ib, 0, info.data(), info.size() * sizeof(SeqInfo));
    const LayerPools& pools = layers[l];
    AttendArgs a;
    a.params = pools.codec;
    a.num_seqs = int(S);
    a.num_q_heads = hq;
    a.num_kv_heads = Hk;
    a.scale = scale;
    a.q = &qb;
    a.out = &ob;
    a.out_type = out_type;
    a.records = pools.records.get();
    a.block_tables = &tb;
    a.max_blocks = width;
    a.sink = pools.sink_k.get();
    a.sink_v = pools.sink_v.get();
    a.tail = pools.tail_k.get();
    a.tail_v = pools.tail_v.get();
    a.sink_capacity = sink_cap;
    a.tail_capacity = tail_cap;
    a.seq_info = &ib;
    a.host_seq_info = info.data();  // the backend validates and sizes from these: no read-back
    a.host_block_tables = tables.data();
    be->attend(a);
  }
  if (!on_device) be->read(ob, 0, out, out_bytes);
}

// --- inspection --------------------------------------------------------------------------------

MaterializedKV KVCache::materialize(SeqId id, int layer, Frame frame) {
  KVARN_CL_CACHE_CALL("materialize", true);
  Impl& m = *impl_;
  m.check_layer(layer, "materialize");
  const Impl::Sequence& s = m.find(id, "materialize");
  MaterializedKV r;
  r.tokens = s.length[std::size_t(layer)];
  if (r.tokens == 0) return r;
  std::vector<std::int32_t> lens;
  const int cap = m.gather_fp16(layer, {&s}, lens);
  const std::size_t rows = std::size_t(m.Hk) * cap;
  Buffer* k = &m.mat_k.ensure(*m.be, 0);
  Buffer* v = &m.mat_v.ensure(*m.be, 0);
  if (frame == Frame::original) {
    // H is its own inverse: rotating the rotated fp16 rows again gives the original frame.
    Buffer& ok = m.deq_k.ensure(*m.be, rows * m.row_bytes());
    Buffer& ov = m.deq_v.ensure(*m.be, rows * m.row_bytes());
    m.be->rotate(m.cfg.codec, *k, ElementType::f16, rows, ok, 0);  // the preset plays no part in a rotation
    m.be->rotate(m.cfg.codec, *v, ElementType::f16, rows, ov, 0);
    k = &ok;
    v = &ov;
  }
  r.k.resize(rows * m.D);
  r.v.resize(rows * m.D);
  m.be->read(*k, 0, r.k.data(), rows * m.row_bytes());
  m.be->read(*v, 0, r.v.data(), rows * m.row_bytes());
  return r;  // cap == tokens for a single sequence
}

SequenceSnapshot KVCache::snapshot(SeqId id, int layer) {
  KVARN_CL_CACHE_CALL("snapshot", false);
  Impl& m = *impl_;
  m.check_layer(layer, "snapshot");
  const Impl::Sequence& s = m.find(id, "snapshot");
  const Impl::LayerPools& p = m.layers[std::size_t(layer)];
  SequenceSnapshot r;
  r.sink_len = m.sink_len(s, layer);
  r.num_tiles = m.tiles_for(s.committed[std::size_t(layer)]);
  r.tail_len = m.tail_len(s, layer);
  const std::size_t rb = p.layout.bytes * m.Hk, row = m.row_bytes();
  r.records.resize(std::size_t(r.num_tiles) * rb);
  for (int j = 0; j < r.num_tiles; ++j)
    m.be->read(*p.records, std::size_t(s.blocks[std::size_t(j)]) * rb, r.records.data() + j * rb, rb);
  r.sink_k.resize(std::size_t(m.Hk) * r.sink_len * m.D);
  r.sink_v.resize(r.sink_k.size());
  r.tail_k.resize(std::size_t(m.Hk) * r.tail_len * m.D);
  r.tail_v.resize(r.tail_k.size());
  for (int h = 0; h < m.Hk; ++h) {
    const std::size_t so = std::size_t(h) * r.sink_len * m.D, to = std::size_t(h) * r.tail_len * m.D;
    m.be->read(*p.sink_k, m.sink_row(s.slot, h, 0) * row, r.sink_k.data() + so, r.sink_len * row);
    m.be->read(*p.sink_v, m.sink_row(s.slot, h, 0) * row, r.sink_v.data() + so, r.sink_len * row);
    m.be->read(*p.tail_k, m.tail_row(s.slot, h, 0) * row, r.tail_k.data() + to, r.tail_len * row);
    m.be->read(*p.tail_v, m.tail_row(s.slot, h, 0) * row, r.tail_v.data() + to, r.tail_len * row);
  }
  return r;
}

MemoryReport KVCache::memory_report() const {
  KVARN_CL_CACHE_CALL("memory_report", false);
  const Impl& m = *impl_;
  MemoryReport r;
  for (const Impl::LayerPools& p : m.layers) {
    r.records += p.records->size();
    r.sink += p.sink_k->size() + p.sink_v->size();
    r.tail += p.tail_k->size() + p.tail_v->size();
  }
  r.block_tables = m.pool.host_bytes() + m.tables_ws.bytes();
  r.seq_info = m.info_ws.bytes() + m.free_slots.capacity() * sizeof(int) +
               m.seqs.bucket_count() * sizeof(void*);
  for (const auto& kv : m.seqs) {
    const Impl::Sequence& s = kv.second;
    r.block_tables += s.blocks.capacity() * sizeof(std::int32_t);
    // the map node: key, state and the per-layer vectors
    r.seq_info += sizeof(SeqId) + sizeof(Impl::Sequence) + sizeof(void*) +
                  (s.length.capacity() + s.committed.capacity()) * sizeof(int);
    for (int l = 0; l < m.cfg.num_layers; ++l) {
      const int c = s.committed[std::size_t(l)];
      r.live_tokens += std::size_t(s.length[std::size_t(l)]);
      r.records_in_use += std::size_t(m.tiles_for(c)) * m.Hk * m.layers[std::size_t(l)].layout.bytes;
      r.exact_recent_tokens += std::size_t(m.tiles_for(c, 0) - m.tiles_for(c)) * std::size_t(m.G);
    }
  }
  for (const cache::Workspace* w : {&m.in_k, &m.in_v, &m.rot_k, &m.rot_v, &m.q_ws, &m.out_ws, &m.deq_k,
                                    &m.deq_v, &m.mat_k, &m.mat_v, &m.lens_ws, &m.shift_ws})
    r.workspaces += w->bytes();
  r.fp16_equivalent = r.live_tokens * m.Hk * m.row_bytes() * 2;
  r.free_blocks = m.pool.free_count();
  return r;
}

}  // namespace kvarn_cl
