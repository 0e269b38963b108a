// The append plan (src/cache/append_plan.hpp) on its own, host arithmetic only: where the new
// rows of an append go (sink, tail, completing tiles), the staging layout and its inverse, and
// that every new row is placed exactly once.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "cache/append_plan.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::test {
namespace {

using cache::AppendPlan;
using cache::Geometry;
using cache::Sequence;

// G 8, sink 8, 2 KV heads, no recent window, up to 8 uncommitted tokens.
Geometry small_geometry(int recent = 0) {
  Geometry g;
  g.G = 8;
  g.D = 64;
  g.Hk = 2;
  g.sink_cap = 8;
  g.recent = recent;
  g.tail_cap = g.G - 1 + recent + 8;
  return g;
}

Sequence sequence_with(int slot, int length, int committed, const Geometry& g) {
  Sequence s;
  s.slot = slot;
  s.length = {length};
  s.committed = {committed};
  s.blocks.resize(std::size_t(g.tiles_for(committed)));
  for (std::size_t j = 0; j < s.blocks.size(); ++j) s.blocks[j] = std::int32_t(10 + j);
  return s;
}

TEST(AppendPlan, PrefillFillsTheSinkThenTilesThenTheTail) {
  const Geometry g = small_geometry();
  Sequence s = sequence_with(1, 0, 0, g);
  const AppendPlan plan = cache::plan_append(g, {&s}, {8 + 2 * 8 + 5}, 0, AppendMode::commit);
  ASSERT_EQ(plan.entries.size(), 1u);
  const cache::AppendEntryPlan& p = plan.entries[0];
  EXPECT_EQ(p.to_sink, 8);
  EXPECT_EQ(p.past_sink, 21);
  EXPECT_EQ(p.tiles_before, 0);
  EXPECT_EQ(p.tail_before, 0);
  EXPECT_EQ(p.tiles_completed, 2);
  EXPECT_EQ(p.tail_rows_moved, 0);
  EXPECT_EQ(p.blocks_to_take, 2);
  EXPECT_EQ(plan.input_rows, std::size_t(29 * g.Hk));
  EXPECT_EQ(plan.staging_rows, std::size_t(29 * g.Hk));

  const cache::AppendMoves m = cache::plan_moves(g, plan, {{40, 41}});
  ASSERT_EQ(m.quantize.size(), std::size_t(2 * g.Hk));
  // Head 0's tiles start after its sink rows; record ids are block * Hk + head.
  EXPECT_EQ(m.quantize[0].src_row, 8u);
  EXPECT_EQ(m.quantize[0].dst_record, 40u * 2);
  EXPECT_EQ(m.quantize[1].src_row, 16u);
  EXPECT_EQ(m.quantize[1].dst_record, 41u * 2);
  EXPECT_EQ(m.quantize[2].dst_record, 40u * 2 + 1);
  ASSERT_EQ(m.to_tail.size(), std::size_t(g.Hk));
  EXPECT_EQ(m.to_tail[0].src_row, 24u);
  EXPECT_EQ(m.to_tail[0].dst_row, g.tail_row(1, 0, 0));
  EXPECT_EQ(m.to_tail[0].rows, 5u);
  EXPECT_TRUE(m.gap_fill.empty());
}

TEST(AppendPlan, CompletingTileTakesTheOldTailRowsInFront) {
  const Geometry g = small_geometry();
  Sequence s = sequence_with(0, 8 + 8 + 3, 8 + 8 + 3, g);  // one tile, a tail of 3
  const AppendPlan plan = cache::plan_append(g, {&s}, {6}, 0, AppendMode::commit);
  const cache::AppendEntryPlan& p = plan.entries[0];
  EXPECT_EQ(p.to_sink, 0);
  EXPECT_EQ(p.tiles_before, 1);
  EXPECT_EQ(p.tail_before, 3);
  EXPECT_EQ(p.tiles_completed, 1);
  EXPECT_EQ(p.tail_rows_moved, 3);
  EXPECT_EQ(p.blocks_to_take, 1);
  EXPECT_EQ(p.staging_rows_per_head(), 9);
  const cache::AppendMoves m = cache::plan_moves(g, plan, {{7}});
  ASSERT_EQ(m.gap_fill.size(), std::size_t(g.Hk));
  EXPECT_EQ(m.gap_fill[1].src_row, g.tail_row(0, 1, 0));
  EXPECT_EQ(m.gap_fill[1].dst_row, 9u);
  EXPECT_EQ(m.gap_fill[1].rows, 3u);
  ASSERT_EQ(m.quantize.size(), std::size_t(g.Hk));
  EXPECT_EQ(m.quantize[1].src_row, 9u);
  EXPECT_EQ(m.quantize[1].dst_record, 7u * 2 + 1);
  ASSERT_EQ(m.to_tail.size(), std::size_t(g.Hk));
  EXPECT_EQ(m.to_tail[1].src_row, 9u + 8);
  EXPECT_EQ(m.to_tail[1].rows, 1u);  // 3 + 6 - 8
}

TEST(AppendPlan, SpeculativeTokensStayInTheTail) {
  const Geometry g = small_geometry();
  Sequence s = sequence_with(2, 8 + 5, 8 + 5, g);
  const AppendPlan plan = cache::plan_append(g, {&s}, {6}, 0, AppendMode::speculative);
  const cache::AppendEntryPlan& p = plan.entries[0];
  EXPECT_EQ(p.tiles_completed, 0);
  EXPECT_EQ(p.tail_rows_moved, 0);
  EXPECT_EQ(p.blocks_to_take, 0);
  const cache::AppendMoves m = cache::plan_moves(g, plan, {{}});
  EXPECT_TRUE(m.quantize.empty());
  ASSERT_EQ(m.to_tail.size(), std::size_t(g.Hk));
  EXPECT_EQ(m.to_tail[0].dst_row, g.tail_row(2, 0, 5));
  EXPECT_EQ(m.to_tail[0].rows, 6u);
}

TEST(AppendPlan, RecentWindowDelaysTheTile) {
  const Geometry g = small_geometry(4);
  Sequence s = sequence_with(0, 0, 0, g);
  // 8 sink + 10: without the window one tile would complete; with 4 recent tokens none does.
  EXPECT_EQ(cache::plan_append(g, {&s}, {18}, 0, AppendMode::commit).entries[0].tiles_completed, 0);
  EXPECT_EQ(cache::plan_append(g, {&s}, {20}, 0, AppendMode::commit).entries[0].tiles_completed, 1);
}

TEST(AppendPlan, EveryNewRowIsPlacedOnceAndLocatedBack) {
  const Geometry g = small_geometry();
  // A batch that mixes a filling sink, a tail that completes tiles (commit mode) and a tail that
  // only grows.
  Sequence a = sequence_with(0, 3, 3, g), b = sequence_with(1, 8 + 8 + 6, 8 + 8 + 6, g),
           c = sequence_with(2, 8 + 1, 8 + 1, g);
  for (AppendMode mode : {AppendMode::commit, AppendMode::speculative}) {
    const std::vector<int> t =
        mode == AppendMode::commit ? std::vector<int>{7, 19, 4} : std::vector<int>{5, 4, 4};
    const AppendPlan plan = cache::plan_append(g, {&a, &b, &c}, t, 0, mode);
    std::vector<std::vector<std::int32_t>> blocks(plan.entries.size());
    std::int32_t next = 50;
    for (std::size_t i = 0; i < plan.entries.size(); ++i)
      for (int n = 0; n < plan.entries[i].blocks_to_take; ++n) blocks[i].push_back(next++);
    const cache::AppendMoves m = cache::plan_moves(g, plan, blocks);
    // How often each staging row leaves staging (to the sink, the tail, or inside a tile).
    std::map<std::size_t, int> placed;
    for (const auto* runs : {&m.to_sink, &m.to_tail})
      for (const RowRun& r : *runs)
        for (std::uint64_t i = 0; i < r.rows; ++i) ++placed[std::size_t(r.src_row + i)];
    for (const QuantizeJob& j : m.quantize)
      for (int i = 0; i < g.G; ++i) ++placed[j.src_row + std::size_t(i)];
    std::size_t new_rows = 0;
    for (std::size_t e = 0; e < plan.entries.size(); ++e) {
      const cache::AppendEntryPlan& p = plan.entries[e];
      for (int h = 0; h < g.Hk; ++h)
        for (int tok = -p.tail_rows_moved; tok < p.new_tokens; ++tok) {
          const std::size_t row = p.staging_row(h, tok);
          EXPECT_EQ(placed[row], 1) << "entry " << e << " head " << h << " token " << tok;
          const cache::StagingPosition at = plan.locate(row);
          EXPECT_EQ(at.entry, e);
          EXPECT_EQ(at.head, std::size_t(h));
          EXPECT_EQ(at.token, tok);
          new_rows += tok >= 0;
        }
    }
    EXPECT_EQ(new_rows, plan.input_rows);
    const std::vector<RowRun> input = cache::input_to_staging_runs(g, plan);
    EXPECT_EQ(input.size(), plan.input_rows);
  }
}

TEST(AppendPlan, TailOverflowIsAnInternalError) {
  const Geometry g = small_geometry();
  Sequence s = sequence_with(0, 8 + 7, 8 + 7, g);
  try {
    cache::plan_append(g, {&s}, {g.tail_cap}, 0, AppendMode::speculative);
    ADD_FAILURE() << "expected an internal error";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::internal) << e.what();
  }
}

}  // namespace
}  // namespace kvarn_cl::test
