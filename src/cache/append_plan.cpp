// The arithmetic of an append (append_plan.hpp): how many new rows go to the sink, to the tail
// and into tiles that complete, and the row runs and quantize jobs that move them there.
#include "cache/append_plan.hpp"

#include <algorithm>

#include "cache/error_message.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cache {

AppendPlan plan_append(const Geometry& g, const std::vector<Sequence*>& batch,
                       const std::vector<int>& tokens, int layer, AppendMode mode) {
  const std::size_t l = std::size_t(layer);
  AppendPlan plan;
  plan.entries.reserve(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    AppendEntryPlan p;
    p.seq = batch[i];
    p.new_tokens = tokens[i];
    p.length_before = p.seq->length[l];
    const int committed_before = p.seq->committed[l];
    p.to_sink = std::clamp(g.sink_cap - p.length_before, 0, p.new_tokens);
    p.past_sink = p.new_tokens - p.to_sink;
    p.tiles_before = g.tiles_for(committed_before);
    // Tokens past the sink once the sink has taken its share, less those in quantized tiles:
    // 0 while the sink still fills, else the current tail length.
    p.tail_before = std::max(0, p.length_before + p.to_sink - g.sink_cap) - p.tiles_before * g.G;
    p.tiles_completed = mode == AppendMode::commit
                            ? g.tiles_for(committed_before + p.new_tokens) - p.tiles_before
                            : 0;
    p.tail_rows_moved = p.tiles_completed > 0 ? p.tail_before : 0;
    if (p.tiles_completed == 0 && p.tail_before + p.past_sink > g.tail_cap)
      throw Error(Status::internal, message("append: tail overflow (", p.tail_before + p.past_sink,
                                            " > ", g.tail_cap, ')'));
    const int held = std::max(p.tiles_before, int(p.seq->blocks.size()));
    p.blocks_to_take = std::max(0, p.tiles_before + p.tiles_completed - held);
    p.first_input_row = plan.input_rows;
    p.first_staging_row = plan.staging_rows;
    plan.input_rows += std::size_t(p.new_tokens) * std::size_t(g.Hk);
    plan.staging_rows += std::size_t(p.staging_rows_per_head()) * std::size_t(g.Hk);
    plan.blocks_to_take += std::size_t(p.blocks_to_take);
    plan.entries.push_back(p);
  }
  return plan;
}

StagingPosition AppendPlan::locate(std::size_t staging_row) const {
  std::size_t i = 0;
  while (i + 1 < entries.size() && entries[i + 1].first_staging_row <= staging_row) ++i;
  const AppendEntryPlan& p = entries[i];
  const std::size_t in_region = staging_row - p.first_staging_row;
  const std::size_t width = std::size_t(p.staging_rows_per_head());
  return {i, long(in_region % width) - p.tail_rows_moved, in_region / width};
}

AppendMoves plan_moves(const Geometry& g, const AppendPlan& plan,
                       const std::vector<std::vector<std::int32_t>>& new_blocks) {
  AppendMoves m;
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const AppendEntryPlan& p = plan.entries[i];
    const std::vector<std::int32_t>& table = p.seq->blocks;
    const int slot = p.seq->slot;
    for (int h = 0; h < g.Hk; ++h) {
      const std::size_t region =
          p.first_staging_row + std::size_t(h) * std::size_t(p.staging_rows_per_head());
      if (p.to_sink > 0)
        m.to_sink.push_back(
            {region, g.sink_row(slot, h, p.length_before), std::uint64_t(p.to_sink)});
      if (p.tiles_completed == 0) {
        if (p.past_sink > 0)
          m.to_tail.push_back({region + std::size_t(p.to_sink), g.tail_row(slot, h, p.tail_before),
                               std::uint64_t(p.past_sink)});
        continue;
      }
      // The tail-space stream (old tail rows, then the new past-sink rows) starts after the
      // sink rows; moved tail rows only exist when the sink is already full (to_sink = 0).
      const std::size_t stream = region + std::size_t(p.to_sink);
      if (p.tail_rows_moved > 0)
        m.gap_fill.push_back({g.tail_row(slot, h, 0), stream, std::uint64_t(p.tail_rows_moved)});
      for (int j = 0; j < p.tiles_completed; ++j) {
        const std::size_t tile = std::size_t(p.tiles_before + j);
        const std::int32_t block =
            tile < table.size() ? table[tile] : new_blocks[i][tile - table.size()];
        m.quantize.push_back({std::uint32_t(stream + std::size_t(j) * std::size_t(g.G)),
                              std::uint32_t(block * g.Hk + h)});
      }
      const int leftover = p.tail_before + p.past_sink - p.tiles_completed * g.G;
      if (leftover > 0)
        m.to_tail.push_back({stream + std::size_t(p.tiles_completed) * std::size_t(g.G),
                             g.tail_row(slot, h, 0), std::uint64_t(leftover)});
    }
  }
  return m;
}

std::vector<RowRun> input_to_staging_runs(const Geometry& g, const AppendPlan& plan) {
  std::vector<RowRun> runs;
  runs.reserve(plan.input_rows);
  for (const AppendEntryPlan& p : plan.entries)
    for (int h = 0; h < g.Hk; ++h)
      for (int t = 0; t < p.new_tokens; ++t)
        runs.push_back({p.input_row(g.Hk, h, t), p.staging_row(h, t), 1});
  return runs;
}

}  // namespace kvarn_cl::cache
