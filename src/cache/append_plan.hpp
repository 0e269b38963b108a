// The plan of one append (one layer, a batch of sequences), made on the host before any device
// call: where each new row goes (sink, tail, or a tile that completes and is quantized), how the
// rows are laid out in the staging buffers, and the row runs and quantize jobs that carry it out.
// Pure arithmetic on host state; kv_cache_append.cpp checks the request first and executes the
// plan (rotate, copy_rows, quantize).
//
// Staging layout: per batch entry and KV head, a region of tail_rows_moved + new_tokens rows. When
// the append completes tiles, the region starts with a copy of the old tail rows (tail_rows_moved
// of them), so that every completing tile is G contiguous rows: [old tail rows][new rows].
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/geometry.hpp"
#include "cache/sequence.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/cache.hpp"

namespace kvarn_cl::cache {

// One batch entry: new_tokens tokens appended to one sequence.
struct AppendEntryPlan {
  Sequence* seq = nullptr;
  int new_tokens = 0;       // tokens this entry appends
  int length_before = 0;    // tokens of the sequence in the layer before the append
  int to_sink = 0;          // new tokens that go to the sink (it fills first)
  int past_sink = 0;        // new tokens after the sink: into the tail, or into completing tiles
  int tiles_before = 0;     // tiles quantized before the append
  int tail_before = 0;      // tail rows before the append (where the past-sink tokens continue)
  int tiles_completed = 0;  // tiles the append completes and quantizes (commit mode only)
  // Old tail rows copied to the front of each staging region: tail_before when tiles complete
  // (their first rows are those tail rows), 0 otherwise.
  int tail_rows_moved = 0;
  int blocks_to_take = 0;  // completing tiles that have no block yet in the sequence's table
  std::size_t first_input_row = 0;  // first row of this entry in the caller's k / v ([tokens][Hk])
  std::size_t first_staging_row = 0;  // first staging row of head 0

  int staging_rows_per_head() const { return tail_rows_moved + new_tokens; }
  // Staging row of the new token `token` (0-based within the entry) of KV head h; tokens
  // -tail_rows_moved..-1 are the moved old tail rows in front of it.
  std::size_t staging_row(int h, int token) const {
    return first_staging_row + std::size_t(h) * std::size_t(staging_rows_per_head()) +
           std::size_t(tail_rows_moved + token);
  }
  // Row of that token in the caller's k / v.
  std::size_t input_row(int kv_heads, int h, int token) const {
    return first_input_row + std::size_t(token) * std::size_t(kv_heads) + std::size_t(h);
  }
};

// Which input token a staging row holds; token < 0 for a moved old tail row.
struct StagingPosition {
  std::size_t entry = 0;
  long token = 0;
  std::size_t head = 0;
};

struct AppendPlan {
  std::vector<AppendEntryPlan> entries;  // in batch order
  std::size_t input_rows = 0;            // rows of the caller's k (and v)
  std::size_t staging_rows = 0;          // rows of the staging buffers
  std::size_t blocks_to_take = 0;        // blocks the append takes from the pool

  StagingPosition locate(std::size_t staging_row) const;
};

// Plans tokens[i] tokens for batch[i] in `layer` (the request is checked by the caller). Throws
// Internal if a row would fall outside the tail (a broken invariant of the capacities).
AppendPlan plan_append(const Geometry& g, const std::vector<Sequence*>& batch,
                       const std::vector<int>& tokens, int layer, AppendMode mode);

// Runs and jobs that carry out a plan, all in staging-row terms (the rotated staging buffers).
struct AppendMoves {
  std::vector<RowRun> gap_fill;       // old tail rows (tail pool) -> front of their staging region
  std::vector<RowRun> to_sink;        // staging -> sink pool
  std::vector<RowRun> to_tail;        // staging -> tail pool (rows that stay fp16)
  std::vector<QuantizeJob> quantize;  // every completing tile -> its record
};

// new_blocks[i]: the blocks taken from the pool for entry i (entries[i].blocks_to_take of them),
// the sequence's table continues with them.
AppendMoves plan_moves(const Geometry& g, const AppendPlan& plan,
                       const std::vector<std::vector<std::int32_t>>& new_blocks);

// Device-resident input: one run per input row, into its staging row.
std::vector<RowRun> input_to_staging_runs(const Geometry& g, const AppendPlan& plan);

}  // namespace kvarn_cl::cache
