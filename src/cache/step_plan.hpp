// The plan of one decode step (KVCache::begin_step, include/kvarn_cl/decode_step.hpp): where the
// new token of each sequence goes, which tiles it completes, and the attention's index data after
// it, computed once on the host and shared by every layer (every layer of a step's sequence holds
// the same tokens, so one plan serves all of them). Pure arithmetic on host state; the step
// (kv_cache_step.cpp) uploads it once and enqueues per layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/geometry.hpp"
#include "cache/sequence.hpp"
#include "kvarn_cl/backend.hpp"

namespace kvarn_cl::cache {

struct StepEntryPlan {
  Sequence* seq = nullptr;
  int length_before = 0;  // tokens in every layer before the step (all committed)
  bool to_sink = false;   // the new token is a sink token
  int position = 0;       // its row in the sink (to_sink) or the tail of each KV head
  bool completes_tile = false;
  int tail_rest = 0;         // tail rows left behind the completed tile (moved to the tail's front)
  std::int32_t block = -1;   // block of the completed tile
  bool block_taken = false;  // ... taken from the pool for this step (given back on rollback)
};

struct StepPlan {
  std::vector<StepEntryPlan> entries;  // batch order
  // One row per (entry, KV head), in the order of the step's K/V input ([seqs][Hk]): >= 0 a row of
  // the tail pools, < 0 the sink row -(d + 1) (AppendRowsArgs::destinations).
  std::vector<std::int32_t> destinations;
  // Every tile the token completes, per KV head, quantized in place in the tail pools.
  std::vector<QuantizeJob> quantize;
  std::vector<std::size_t> quantize_entry;  // batch entry of each job
  // Tail rows left behind the completed tiles, to the front of their tail (copy_rows runs in the
  // tail pools); shift_overlaps: some run's source overlaps its destination (recent window > G).
  std::vector<RowRun> shift;
  bool shift_overlaps = false;
  std::size_t shift_rows = 0;  // rows of all shift runs (the undo copy of one layer)
  // The attention's index data after the token: block tables [seqs][table_width], SeqInfo [seqs].
  int table_width = 1;
  std::vector<std::int32_t> tables;
  std::vector<SeqInfo> info;
  std::size_t blocks_to_take = 0;
};

// Plans the step for `batch` (checked by the caller: known, distinct, equal and committed in every
// layer, room for one more token). Blocks of completing tiles without one come from take_block(),
// called in batch order (blocks_to_take times).
template <typename TakeBlock>
StepPlan plan_step(const Geometry& g, const std::vector<Sequence*>& batch, TakeBlock&& take_block);

// How many blocks plan_step will take (for the pool check before any is taken).
std::size_t step_blocks_needed(const Geometry& g, const std::vector<Sequence*>& batch);

// The fields of one entry, without blocks (block = -1): plan_step's arithmetic, testable alone.
StepEntryPlan plan_step_entry(const Geometry& g, Sequence& seq);

template <typename TakeBlock>
StepPlan plan_step(const Geometry& g, const std::vector<Sequence*>& batch, TakeBlock&& take_block) {
  StepPlan p;
  p.entries.reserve(batch.size());
  for (Sequence* s : batch) {
    StepEntryPlan e = plan_step_entry(g, *s);
    if (e.completes_tile) {
      const std::size_t tile = std::size_t(g.tiles_for(e.length_before));
      if (tile < s->blocks.size()) {
        e.block = s->blocks[tile];
      } else {
        e.block = take_block();
        e.block_taken = true;
        ++p.blocks_to_take;
      }
    }
    p.entries.push_back(e);
  }
  p.destinations.reserve(batch.size() * std::size_t(g.Hk));
  p.info.resize(batch.size());
  for (std::size_t i = 0; i < p.entries.size(); ++i) {
    const StepEntryPlan& e = p.entries[i];
    const int slot = e.seq->slot;
    for (int h = 0; h < g.Hk; ++h) {
      p.destinations.push_back(e.to_sink ? -std::int32_t(g.sink_row(slot, h, e.position)) - 1
                                         : std::int32_t(g.tail_row(slot, h, e.position)));
      if (!e.completes_tile) continue;
      p.quantize.push_back(
          {std::uint32_t(g.tail_row(slot, h, 0)), std::uint32_t(e.block * g.Hk + h)});
      p.quantize_entry.push_back(i);
      if (e.tail_rest > 0) {
        p.shift.push_back(
            {g.tail_row(slot, h, g.G), g.tail_row(slot, h, 0), std::uint64_t(e.tail_rest)});
        p.shift_rows += std::size_t(e.tail_rest);
        p.shift_overlaps = p.shift_overlaps || e.tail_rest > g.G;
      }
    }
    const int tiles_after = g.tiles_for(e.length_before + 1);
    p.table_width = std::max(p.table_width, tiles_after);
  }
  p.tables.assign(batch.size() * std::size_t(p.table_width), 0);
  for (std::size_t i = 0; i < p.entries.size(); ++i) {
    const StepEntryPlan& e = p.entries[i];
    const int length = e.length_before + 1;
    const int tiles = g.tiles_for(length);
    for (int j = 0; j < tiles; ++j)
      p.tables[i * std::size_t(p.table_width) + std::size_t(j)] =
          std::size_t(j) < e.seq->blocks.size() ? e.seq->blocks[std::size_t(j)] : e.block;
    const int sink = std::min(length, g.sink_cap);
    p.info[i] = SeqInfo{e.seq->slot, sink, tiles, length - sink - tiles * g.G};
  }
  return p;
}

}  // namespace kvarn_cl::cache
