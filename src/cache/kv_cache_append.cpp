// KVCache::append: T tokens of one layer for a batch of sequences, every device call batched.
//   1. host: check the request, plan it (append_plan.hpp: which rows go to the sink, to the tail,
//      into tiles that complete), check host rows for NaN/Inf and the codec bound, and place every
//      input row at its staging row;
//   2. upload (or, for device-resident input, one copy_rows) and rotate, one call each for K and V;
//   3. copy_rows: old tail rows to the front of their staging region, so every completing tile is
//      G contiguous rows (device-resident input is range-checked here, once rotated);
//   4. copy_rows: rows that stay fp16 go to the tail pool (and the sink pool while it fills);
//   5. quantize: one call over every completing tile of every sequence and head.
// Host state changes only after the device calls succeeded; blocks taken for a failed append go
// back to the pool.
#include <cstring>

#include "cache/append_plan.hpp"
#include "cache/error_message.hpp"
#include "cache/input_checks.hpp"
#include "cache/kv_cache_impl.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

namespace cache {

// The input rows placed at their staging rows: host rows already copied into host_k/host_v
// (staging layout, gaps left zero), or device rows to be moved there by device_runs.
struct StagedInput {
  const Buffer* k_device = nullptr;
  const Buffer* v_device = nullptr;
  std::vector<RowRun> device_runs;
  std::vector<unsigned char> host_k, host_v;
  std::size_t row_bytes = 0;  // bytes of one input row (f32 or f16)
};

}  // namespace cache

namespace {

// The limits one entry of an append must respect, given its sequence's state in `layer`.
void check_append_entry(const cache::Sequence& s, int layer, int tokens, std::size_t entry,
                        AppendMode mode, const CacheConfig& cfg) {
  if (tokens < 1)
    throw InvalidArgument(message("append: tokens[", entry, "] = ", tokens, ": must be >= 1"));
  const int length = s.length[std::size_t(layer)],
            uncommitted = length - s.committed[std::size_t(layer)];
  if (length + (long long)tokens > cfg.max_tokens_per_sequence)
    throw InvalidArgument(message(
        "append: sequence ", s.id, " would hold ", length + (long long)tokens, " tokens in layer ",
        layer, ", more than max_tokens_per_sequence ", cfg.max_tokens_per_sequence));
  if (mode == AppendMode::commit && uncommitted != 0)
    throw InvalidArgument(message("append: sequence ", s.id, " has ", uncommitted,
                                  " uncommitted tokens in layer ", layer,
                                  "; commit or roll them back before a committed append"));
  if (mode == AppendMode::speculative && uncommitted + tokens > cfg.max_uncommitted)
    throw InvalidArgument(message("append: sequence ", s.id, " would hold ", uncommitted + tokens,
                                  " uncommitted tokens in layer ", layer,
                                  ", more than max_uncommitted ", cfg.max_uncommitted));
}

// Host input: every row checked (input_checks.hpp), then copied to its staging row.
void stage_host_rows(const cache::Geometry& g, const cache::AppendPlan& plan, const void* k,
                     const void* v, ElementType type, cache::StagedInput& staged) {
  const std::size_t row = staged.row_bytes;
  staged.host_k.assign(plan.staging_rows * row, 0);
  staged.host_v.assign(plan.staging_rows * row, 0);
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const cache::AppendEntryPlan& p = plan.entries[i];
    for (int h = 0; h < g.Hk; ++h)
      for (int t = 0; t < p.new_tokens; ++t) {
        const std::size_t src = p.input_row(g.Hk, h, t) * row, dst = p.staging_row(h, t) * row;
        const unsigned char* ks = static_cast<const unsigned char*>(k) + src;
        const unsigned char* vs = static_cast<const unsigned char*>(v) + src;
        cache::check_host_row(ks, type, g.D, "k", i, t, h);
        cache::check_host_row(vs, type, g.D, "v", i, t, h);
        std::memcpy(staged.host_k.data() + dst, ks, row);
        std::memcpy(staged.host_v.data() + dst, vs, row);
      }
  }
}

}  // namespace

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

void KVCache::Impl::append(int layer, const std::vector<SeqId>& ids, const std::vector<int>& tokens,
                           Rows k_rows, Rows v_rows, ElementType type, AppendMode mode) {
  check_no_step("append");
  check_layer(layer, "append");
  check_not_empty(ids, "append");
  const bool on_device = k_rows.device != nullptr;
  if (on_device ? v_rows.device == nullptr : (k_rows.host == nullptr || v_rows.host == nullptr))
    throw InvalidArgument("append: k or v is null");
  const std::vector<Sequence*> batch = find_batch(ids, tokens, "append");
  for (std::size_t i = 0; i < batch.size(); ++i)
    check_append_entry(*batch[i], layer, tokens[i], i, mode, cfg);

  const cache::AppendPlan plan = cache::plan_append(*this, batch, tokens, layer, mode);
  check_free_blocks(plan.blocks_to_take, "append");
  if (plan.staging_rows > 0xffffffffULL)  // QuantizeJob::src_row is 32 bits
    throw InvalidArgument(
        message("append: ", plan.staging_rows, " staging rows exceed 2^32; split the append"));

  cache::StagedInput staged;
  staged.row_bytes = std::size_t(D) * (type == ElementType::f32 ? 4 : 2);
  if (on_device) {
    const std::size_t needed = plan.input_rows * staged.row_bytes;
    const std::string batch_rows =
        message("the batch (", plan.input_rows, " rows of ", staged.row_bytes, " bytes)");
    cache::check_buffer_holds(*k_rows.device, needed, "append", "k", batch_rows);
    cache::check_buffer_holds(*v_rows.device, needed, "append", "v", batch_rows);
    staged.k_device = k_rows.device;
    staged.v_device = v_rows.device;
    staged.device_runs = cache::input_to_staging_runs(*this, plan);
  } else {
    stage_host_rows(*this, plan, k_rows.host, v_rows.host, type, staged);
  }

  std::vector<std::vector<std::int32_t>> new_blocks(plan.entries.size());
  for (std::size_t i = 0; i < plan.entries.size(); ++i)
    for (int b = 0; b < plan.entries[i].blocks_to_take; ++b) new_blocks[i].push_back(pool.take());
  try {
    execute_append(layer, plan, staged, cache::plan_moves(*this, plan, new_blocks), type);
  } catch (...) {
    for (const std::vector<std::int32_t>& taken : new_blocks)
      for (std::int32_t b : taken) pool.give_back(b);
    throw;
  }

  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const cache::AppendEntryPlan& p = plan.entries[i];
    p.seq->blocks.insert(p.seq->blocks.end(), new_blocks[i].begin(), new_blocks[i].end());
    p.seq->length[std::size_t(layer)] += p.new_tokens;
    if (mode == AppendMode::commit) p.seq->committed[std::size_t(layer)] += p.new_tokens;
  }
}

void KVCache::Impl::execute_append(int layer, const cache::AppendPlan& plan,
                                   const cache::StagedInput& staged,
                                   const cache::AppendMoves& moves, ElementType type) {
  const std::size_t rows = plan.staging_rows;
  // 2. Upload (or place device rows) and rotate.
  Buffer& ik = in_k.ensure(*be, rows * staged.row_bytes);
  Buffer& iv = in_v.ensure(*be, rows * staged.row_bytes);
  Buffer& rk = rot_k.ensure(*be, rows * row_bytes());
  Buffer& rv = rot_v.ensure(*be, rows * row_bytes());
  if (staged.k_device) {
    be->copy_rows(*staged.k_device, ik, staged.device_runs, staged.row_bytes);
    be->copy_rows(*staged.v_device, iv, staged.device_runs, staged.row_bytes);
  } else {
    be->write(ik, 0, staged.host_k.data(), staged.host_k.size());
    be->write(iv, 0, staged.host_v.data(), staged.host_v.size());
  }
  LayerPools& pools = layers[std::size_t(layer)];
  be->rotate(pools.codec, ik, type, rows, rk, 0);
  be->rotate(pools.codec, iv, type, rows, rv, 0);
  // 3. Old tail rows into the gaps (before step 4 overwrites the tail's first rows).
  if (!moves.gap_fill.empty()) {
    be->copy_rows(*pools.tail_k, rk, moves.gap_fill, row_bytes());
    be->copy_rows(*pools.tail_v, rv, moves.gap_fill, row_bytes());
  }
  // Device-resident rows were never seen by the host: the rotated staging rows (new rows, and
  // moved tail rows that passed this check before) are checked before anything is stored.
  if (staged.k_device) {
    cache::check_rotated_staging_rows(*be, rk, plan, D, "k");
    cache::check_rotated_staging_rows(*be, rv, plan, D, "v");
  }
  // 4. fp16 rows to their pools.
  if (!moves.to_tail.empty()) {
    be->copy_rows(rk, *pools.tail_k, moves.to_tail, row_bytes());
    be->copy_rows(rv, *pools.tail_v, moves.to_tail, row_bytes());
  }
  if (!moves.to_sink.empty()) {
    be->copy_rows(rk, *pools.sink_k, moves.to_sink, row_bytes());
    be->copy_rows(rv, *pools.sink_v, moves.to_sink, row_bytes());
  }
  // 5. One quantize for every complete tile of the batch.
  if (!moves.quantize.empty()) be->quantize(pools.codec, rk, rv, moves.quantize, *pools.records);
}

}  // namespace kvarn_cl
