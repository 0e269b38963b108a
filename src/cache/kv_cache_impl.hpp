// KVCache::Impl, the private state shared by the parts of the cache. One job per file:
//   cache_config.cpp          CacheConfig checks and per-layer codec parameters
//   kv_cache_construction.cpp geometry from the config, the up-front size check, the pools
//   kv_cache_sequences.cpp    sequences (ids, slots, lengths) and the lookups every call shares
//   append_plan.cpp           the plan of an append (where each new row goes)
//   kv_cache_append.cpp       append: checks the request, plans it, executes the plan
//   input_checks.cpp          the checks of caller data (host rows and queries, device buffers)
//   kv_cache_commit.cpp       commit (quantize in the tail) and rollback
//   step_plan.cpp             the plan of a decode step (where each new token goes)
//   kv_cache_step.cpp         the decode step: begin_step, its enqueue-only append and attend,
//                             its synchronization point and rollback
//   kv_cache_attend.cpp       attend: its arguments, the fused and the materialize path
//   materialize_gather.cpp    fp16 rows of sequences gathered on the device; KVCache::materialize
//   kv_cache_snapshot.cpp     raw content of one sequence
//   memory_report.cpp         every byte the cache holds
//   layer_presets.cpp         layer-preset files
// and the headers geometry.hpp (where a sequence's tokens are), sequence.hpp, call_guard.hpp
// (the misuse guard), block_pool.hpp, workspace.hpp, error_message.hpp.
// Host state (sequences, block tables) lives here; every byte of K/V lives on the backend.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "cache/block_pool.hpp"
#include "cache/call_guard.hpp"
#include "cache/geometry.hpp"
#include "cache/sequence.hpp"
#include "cache/workspace.hpp"
#include "kvarn_cl/cache.hpp"

namespace kvarn_cl {

namespace cache {
struct AppendPlan;   // append_plan.hpp
struct AppendMoves;  // append_plan.hpp
struct StagedInput;  // kv_cache_append.cpp
struct StepState;    // kv_cache_step.cpp
}  // namespace cache

// Every out-of-line member is marked KVARN_CL_CACHE_INTERNAL: a nested class of the exported
// KVCache shares its visibility (the class itself cannot be hidden here: it was declared in the
// public header), and these functions are no part of the library's interface (test/package
// checks the exported symbols).
#if defined(__GNUC__)
#define KVARN_CL_CACHE_INTERNAL __attribute__((visibility("hidden")))
#else
#define KVARN_CL_CACHE_INTERNAL
#endif
struct KVCache::Impl : cache::Geometry {
  // Both in kv_cache_step.cpp, where StepState is complete.
  KVARN_CL_CACHE_INTERNAL Impl();
  KVARN_CL_CACHE_INTERNAL ~Impl();
  using Sequence = cache::Sequence;
  // One layer's codec geometry (its own preset) and its pools.
  struct LayerPools {
    CodecParams codec;
    RecordLayout layout;
    std::unique_ptr<Buffer> records, sink_k, sink_v, tail_k, tail_v;
  };
  // Input rows of an append or an attend: host memory (checked on the host) or a Buffer of this
  // cache's backend (stays on the device).
  struct Rows {
    const void* host = nullptr;
    const Buffer* device = nullptr;
  };

  CacheConfig cfg;
  std::shared_ptr<Backend> be;
  int pool_blocks = 0;  // blocks of every layer's record pool
  std::vector<LayerPools> layers;
  cache::BlockPool pool{0};
  std::vector<int> free_slots;
  std::unordered_map<SeqId, Sequence> seqs;
  SeqId next_id = 1;
  // Staging of appends (in_*: input rows, rot_*: rotated), of attends (q, out, tables, info,
  // lens) and of gathers (deq_*: dequantized tiles, mat_*: gathered rows), and commit's tail shift.
  cache::Workspace in_k, in_v, rot_k, rot_v, q_ws, out_ws, tables_ws, info_ws, deq_k, deq_v, mat_k,
      mat_v, lens_ws, shift_ws;
  // The open decode step (kv_cache_step.cpp; null when none), the serial number of the last one,
  // and its device copies of the plan: new-row destinations, quantize jobs, block tables, SeqInfo,
  // status words (two per layer) and the rows its tail shifts overwrite (kept for a rollback).
  std::unique_ptr<cache::StepState> step;
  std::uint64_t step_serial = 0;
  cache::Workspace step_dest_ws, step_jobs_ws, step_tables_ws, step_info_ws, step_status_ws,
      step_undo_ws;
  // KVARN_CL_CACHE_CALL's state (cache/call_guard.hpp).
  mutable std::atomic<int> users{0};
  mutable std::atomic<const char*> writer{nullptr};

  // kv_cache_construction.cpp
  KVARN_CL_CACHE_INTERNAL void check_total_size() const;
  KVARN_CL_CACHE_INTERNAL std::unique_ptr<Buffer> allocate_pool(std::size_t bytes, const char* what,
                                                                int layer);

  // kv_cache_sequences.cpp: the lookups every call shares (InvalidArgument naming `fn`).
  KVARN_CL_CACHE_INTERNAL void check_layer(int layer, const char* fn) const;
  KVARN_CL_CACHE_INTERNAL Sequence& find(SeqId id, const char* fn);
  KVARN_CL_CACHE_INTERNAL const Sequence& find(SeqId id, const char* fn) const;
  // A batch call that needs at least one sequence (append, attend).
  KVARN_CL_CACHE_INTERNAL static void check_not_empty(const std::vector<SeqId>& ids,
                                                      const char* fn);
  // The sequences of a batch call: ids and tokens of the same size, every id known, none twice.
  KVARN_CL_CACHE_INTERNAL std::vector<Sequence*> find_batch(const std::vector<SeqId>& ids,
                                                            const std::vector<int>& tokens,
                                                            const char* fn);
  // OutOfMemory unless the block pool has `needed` free blocks.
  KVARN_CL_CACHE_INTERNAL void check_free_blocks(std::size_t needed, const char* fn) const;

  // kv_cache_append.cpp: checks and plans the request, then executes the plan (device calls).
  KVARN_CL_CACHE_INTERNAL void append(int layer, const std::vector<SeqId>& ids,
                                      const std::vector<int>& tokens, Rows k, Rows v,
                                      ElementType type, AppendMode mode);
  KVARN_CL_CACHE_INTERNAL void execute_append(int layer, const cache::AppendPlan& plan,
                                              const cache::StagedInput& staged,
                                              const cache::AppendMoves& moves, ElementType type);
  // kv_cache_step.cpp: InvalidArgument while a decode step is open (calls that change sequences).
  KVARN_CL_CACHE_INTERNAL void check_no_step(const char* fn) const;
  // The open step that handle `id` names (InvalidArgument naming `fn` otherwise).
  KVARN_CL_CACHE_INTERNAL cache::StepState& open_step(std::uint64_t id, const char* fn);
  // Undoes the open step (host state, tail shifts, blocks) once its device work is done; closes it.
  KVARN_CL_CACHE_INTERNAL void roll_back_step() noexcept;
  KVARN_CL_CACHE_INTERNAL void step_append(std::uint64_t id, int layer, const Buffer& k,
                                           const Buffer& v, ElementType type,
                                           const StepEvents& events);
  KVARN_CL_CACHE_INTERNAL void step_attend(std::uint64_t id, int layer, int hq, const Buffer& q,
                                           Buffer& out, ElementType out_type, float scale,
                                           const StepEvents& events);
  KVARN_CL_CACHE_INTERNAL void step_finish(std::uint64_t id);
  // kv_cache_commit.cpp
  KVARN_CL_CACHE_INTERNAL void commit(const std::vector<SeqId>& ids,
                                      const std::vector<int>& tokens);
  // Quantizes layer l's tiles that `target` (committed tokens per batch entry and layer) completes
  // and shifts the tail rows left behind; false when no tile completes in the layer.
  KVARN_CL_CACHE_INTERNAL bool quantize_committed_tiles(
      std::size_t l, const std::vector<Sequence*>& batch,
      const std::vector<std::vector<int>>& target);
  // kv_cache_attend.cpp
  KVARN_CL_CACHE_INTERNAL void attend(int layer, const std::vector<SeqId>& ids, int hq, Rows q,
                                      void* out, Buffer* out_device, ElementType out_type,
                                      float scale, AttendPath path);
  // The fused attention's arguments of one layer's pools (the caller adds block tables and SeqInfo).
  KVARN_CL_CACHE_INTERNAL AttendArgs layer_attend_args(int layer, int num_seqs, int hq, float scale,
                                                       const Buffer& q, Buffer& out,
                                                       ElementType out_type) const;
  // The two paths of attend over checked arguments (q and out on the backend, scale resolved).
  KVARN_CL_CACHE_INTERNAL void attend_fused(int layer, const std::vector<const Sequence*>& batch,
                                            int hq, float scale, const Buffer& q, Buffer& out,
                                            ElementType out_type);
  KVARN_CL_CACHE_INTERNAL void attend_materialized(int layer,
                                                   const std::vector<const Sequence*>& batch,
                                                   int hq, float scale, const Buffer& q,
                                                   Buffer& out, ElementType out_type);
  // materialize_gather.cpp: gathers the fp16 rotated rows of the listed sequences into mat_k/mat_v as
  // [S][Hk][capacity][D] and their lengths into lens; returns the capacity.
  KVARN_CL_CACHE_INTERNAL int gather_fp16(int layer, const std::vector<const Sequence*>& batch,
                                          std::vector<std::int32_t>& lens);
};

}  // namespace kvarn_cl
