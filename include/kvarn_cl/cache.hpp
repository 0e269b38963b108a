// KVCache: a paged KVarN KV cache for many sequences (SPEC §3, docs/ARCHITECTURE.md).
//
// Layout (one set per layer; every pool lives on the backend):
//   records  [pool_blocks][Hk] records       one block = one tile of all Hk heads of one layer
//   sink K/V [max_sequences][Hk][sink][D]    fp16, rotated; the first `sink_tokens` tokens
//   tail K/V [max_sequences][Hk][tail][D]    fp16, rotated; tokens after the last quantized tile
// A sequence owns one slot of the fp16 pools and one block table (block ids) shared by all layers:
// block j of a sequence holds its tile j in every layer's record pool. Token order of a sequence:
// sink, tiles in block-table order, tail.
//
// Appends are per layer (a model produces layer l's K/V before layer l+1's) and batched over
// sequences. A tile is quantized as soon as it is complete AND committed, in one Backend::quantize
// call per append (or per layer for commit()) covering every new tile of every sequence and head.
// Uncommitted ("speculative") tokens stay fp16 until commit(); rollback() drops them.
// Tail capacity = G - 1 + recent_tokens + max_uncommitted: at most G-1 committed tokens wait for
// their tile to complete, recent_tokens more are kept exact on purpose, plus the uncommitted ones.
//
// Layers may use different presets (CacheConfig::layer_presets, e.g. from a layer-preset file
// written by `kvarn-eval --calibrate`): each layer's record pool, quantize, dequantize and attend
// use that layer's record layout. All layers share the tile size G (one block table serves every
// layer), the head dimension and the Sinkhorn iteration count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl {

// Sequence ids are handed out by add_sequence() and never reused, so a stale id is an error.
using SeqId = std::uint64_t;

// How KVCache::attend reads a compressed layer. Both give SPEC §4's result within SPEC §5's bar;
// the backend calls each needs are in docs/ARCHITECTURE.md.
enum class AttendPath {
  fused,        // scores and values straight from the codes (the library's decode path)
  materialize,  // dequantize the batch's tiles to fp16 rows, then Backend::attend_fp16
};

// The default recent-token window (CacheConfig::recent_tokens): with it, k4v2_g128 meets the
// project's accuracy bar (<= 1 % perplexity; docs/ACCURACY.md, "The default configuration"), at a
// fixed 128 fp16 rows of K and V per layer, KV head and sequence slot (docs/API.md).
constexpr int kDefaultRecentTokens = 128;

struct CacheConfig {
  CodecParams codec;  // head_dim, Sinkhorn iterations, and the preset of every layer by default
  // Empty: every layer uses codec.preset. Otherwise one preset per layer (size num_layers), all
  // with the same tile size G; codec.preset is then ignored.
  std::vector<Preset> layer_presets;
  int num_layers = 1;
  int num_kv_heads = 1;
  int max_sequences = 1;               // sequences alive at once (slots of the fp16 pools)
  int max_tokens_per_sequence = 4096;  // longest sequence (sizes the block tables)
  // Blocks (tiles of all Hk heads) per layer in the record pool; 0 = enough for every sequence to
  // reach max_tokens_per_sequence at once.
  int pool_blocks = 0;
  int sink_tokens = -1;      // fp16 tokens kept at the start of each sequence; -1 = one tile (G)
  int max_uncommitted = 64;  // speculative tokens a sequence may hold, 0..G (default 64)
  // Newest committed tokens kept exact (fp16) beyond the still-filling tile: a tile is quantized
  // only once all its tokens are older than the newest recent_tokens (the llama.cpp KVarN fork
  // keeps 128). They live in the tail pool, which grows by recent_tokens rows per sequence and
  // head and is counted in MemoryReport::tail. 0..65536; 0 turns the window off.
  int recent_tokens = kDefaultRecentTokens;
  std::shared_ptr<Backend> backend;  // required

  // Codec parameters of one layer (its preset from layer_presets, or codec.preset).
  CodecParams layer_codec(int layer) const;
  // Throws InvalidArgument naming the field and its value.
  void validate() const;
};

// Layer-preset files: the per-layer choice of a calibration (`kvarn-eval --calibrate`), read by
// KVCache users, kvarn-eval (`--configs layers:FILE`) and kvarn-cl (`--layer-presets FILE`).
// Text, one line per layer in order, "<layer> <preset>" (layers 0..N-1), '#' starts a comment:
//   # kvarn_cl layer presets
//   0 k4v4_g128
//   1 k4v2_g128
// parse throws InvalidArgument naming `source`, the line and the value; read throws IoError if
// the file cannot be read.
std::vector<Preset> parse_layer_presets(const std::string& text, const std::string& source);
std::vector<Preset> read_layer_presets(const std::string& path);
// The file text for `presets`; every line of `comment` becomes a '#' line at the top.
std::string format_layer_presets(const std::vector<Preset>& presets,
                                 const std::string& comment = "");

enum class AppendMode {
  commit,       // the tokens are committed at once (prefill, plain decode)
  speculative,  // the tokens stay uncommitted until commit(); rollback() drops them
};

// Every byte the cache holds, by kind. "Allocated" numbers are resident whether used or not.
struct MemoryReport {
  std::size_t records = 0;  // record pools, all layers, each at its own preset (allocated)
  std::size_t sink = 0;     // fp16 sink pools, K and V, all layers (allocated)
  std::size_t tail = 0;  // fp16 tail pools, K and V, all layers (allocated; recent window included)
  std::size_t block_tables = 0;  // host block tables + the device copy built for attend()
  std::size_t seq_info = 0;      // host per-sequence state + the device seq_info of attend()
  std::size_t workspaces = 0;    // staging buffers of append/attend/materialize (grow on demand)
  std::size_t total() const noexcept {
    return records + sink + tail + block_tables + seq_info + workspaces;
  }

  // Use, for context (not additional bytes):
  std::size_t records_in_use = 0;  // bytes of records holding live tiles
  std::size_t live_tokens = 0;     // tokens over all sequences and layers (per layer, summed)
  std::size_t exact_recent_tokens =
      0;  // of those, committed tokens held fp16 only because of recent_tokens
  std::size_t fp16_equivalent = 0;  // bytes those tokens would take as fp16 K+V
  std::size_t free_blocks = 0;      // blocks left in the pool
};

// Raw content of one sequence in one layer (tests, debugging): records of its tiles in block-table
// order ([tiles][Hk][record bytes]); sink and tail rows [Hk][len][D] (fp16, rotated).
struct SequenceSnapshot {
  int sink_len = 0, num_tiles = 0, tail_len = 0;
  std::vector<std::uint8_t> records;
  std::vector<half_bits> sink_k, sink_v, tail_k, tail_v;
};

// Dequantized content of one sequence in one layer: K and V rows [Hk][tokens][D], fp16.
struct MaterializedKV {
  int tokens = 0;
  std::vector<half_bits> k, v;
};

class DecodeStep;  // decode_step.hpp

class KVCache {
 public:
  // Allocates every pool up front (OutOfMemory names the pool and its size).
  explicit KVCache(CacheConfig config);
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  const CacheConfig& config() const noexcept;
  const RecordLayout& layout() const noexcept;  // layer 0's record layout
  // One layer's record layout (InvalidArgument for a layer outside [0, num_layers)).
  const RecordLayout& layout(int layer) const;
  Backend& backend() noexcept;
  int sink_capacity() const noexcept;
  int tail_capacity() const noexcept;

  // --- sequences -------------------------------------------------------------------------------
  SeqId add_sequence();                      // OutOfMemory when max_sequences are alive
  void free_sequence(SeqId id);              // its blocks and slot are reused by later sequences
  bool contains(SeqId id) const;             // InvalidArgument while another thread is inside a
  std::size_t num_sequences() const;         // mutating call on this cache (docs/API.md, "Threads")
  int length(SeqId id, int layer) const;     // tokens in the layer, uncommitted included
  int committed(SeqId id, int layer) const;  // committed tokens in the layer
  int quantized_tiles(SeqId id, int layer) const;

  // --- appends (one layer, many sequences) -------------------------------------------------------
  // tokens[i] tokens (>= 1) of seq_ids[i]; k and v hold the rows of all listed sequences one after
  // the other, each sequence [tokens][Hk][D], original frame. Throws InvalidArgument (sizes, ids,
  // capacity), NonFiniteInput (NaN/Inf, or a row that would overflow fp16 once rotated),
  // OutOfMemory (block pool exhausted). On an error nothing changes.
  void append(int layer, const std::vector<SeqId>& seq_ids, const std::vector<int>& tokens,
              const float* k, const float* v, AppendMode mode = AppendMode::commit);
  void append(int layer, const std::vector<SeqId>& seq_ids, const std::vector<int>& tokens,
              const half_bits* k, const half_bits* v, AppendMode mode = AppendMode::commit);
  void append(int layer, const std::vector<SeqId>& seq_ids, const std::vector<int>& tokens,
              const void* k, const void* v, ElementType type, AppendMode mode);
  // The same from buffers of this cache's backend (e.g. an engine's cl_mem wrapped with
  // wrap_opencl_buffer): the rows never travel through the host. They are not scanned for NaN/Inf
  // on the host; a non-finite value still fails the quantize of its tile (NonFiniteInput).
  void append(int layer, const std::vector<SeqId>& seq_ids, const std::vector<int>& tokens,
              const Buffer& k, const Buffer& v, ElementType type, AppendMode mode);

  // Commits the first `tokens` uncommitted tokens of each listed sequence in every layer (-1: all
  // of them, per layer) and quantizes the tiles that became complete (one quantize per layer).
  void commit(const std::vector<SeqId>& seq_ids, const std::vector<int>& tokens);
  void commit(SeqId id, int tokens = -1);
  // Drops every uncommitted token of the sequence in every layer.
  void rollback(SeqId id);

  // --- attention (one layer, one query token per sequence) ------------------------------------
  // q [S][Hq][D] f32, out [S][Hq][D] (original frame); scale 0 = 1/sqrt(D). Every appended token
  // (committed or not) is attended. One Backend::attend call for the whole batch.
  void attend(int layer, const std::vector<SeqId>& seq_ids, int num_q_heads, const float* q,
              float* out, float scale = 0.0f, AttendPath path = AttendPath::fused);
  void attend(int layer, const std::vector<SeqId>& seq_ids, int num_q_heads, const float* q,
              half_bits* out, float scale = 0.0f, AttendPath path = AttendPath::fused);
  // Device-resident variant: q (f32) and out (out_type) are buffers of this cache's backend, the
  // step stays on the device (no host copy of queries or outputs, no NaN/Inf scan of q).
  void attend(int layer, const std::vector<SeqId>& seq_ids, int num_q_heads, const Buffer& q,
              Buffer& out, ElementType out_type, float scale = 0.0f,
              AttendPath path = AttendPath::fused);

  // --- the engine's decode step (decode_step.hpp) ---------------------------------------------
  // One token of every listed sequence through every layer, planned once, enqueue-only per layer,
  // one synchronization at DecodeStep::finish(). Throws InvalidArgument (ids, a sequence whose
  // layers differ in length or hold uncommitted tokens, a step already open, capacity) and
  // OutOfMemory (block pool); on an error nothing changes.
  DecodeStep begin_step(const std::vector<SeqId>& seq_ids);

  // --- inspection ------------------------------------------------------------------------------
  // Dequantized fp16 K/V of one sequence (records decoded by the backend; sink and tail as they
  // are). Frame::original rotates the fp16 rows back (one more fp16 rounding).
  MaterializedKV materialize(SeqId id, int layer, Frame frame = Frame::rotated);
  SequenceSnapshot snapshot(SeqId id, int layer);
  MemoryReport memory_report() const;

 private:
  friend class DecodeStep;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvarn_cl

#include "kvarn_cl/decode_step.hpp"  // KVCache::begin_step's result, usable wherever the cache is
