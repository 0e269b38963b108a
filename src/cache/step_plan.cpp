// The arithmetic of a decode step's plan (step_plan.hpp).
#include "cache/step_plan.hpp"

namespace kvarn_cl::cache {

StepEntryPlan plan_step_entry(const Geometry& g, Sequence& seq) {
  StepEntryPlan e;
  e.seq = &seq;
  e.length_before = seq.length.empty() ? 0 : seq.length[0];
  const int n = e.length_before;
  e.to_sink = n < g.sink_cap;
  const int tiles_before = g.tiles_for(n);
  // Past the sink, the token continues the tail (the tail holds every token after the
  // quantized tiles, committed ones of the recent window and of the filling tile).
  e.position = e.to_sink ? n : n - g.sink_cap - tiles_before * g.G;
  e.completes_tile = g.tiles_for(n + 1) > tiles_before;
  // The completed tile is the tail's first G rows; the rows after it (the recent window, the new
  // token among them when there is one) move to the front.
  e.tail_rest = e.completes_tile ? e.position + 1 - g.G : 0;
  return e;
}

std::size_t step_blocks_needed(const Geometry& g, const std::vector<Sequence*>& batch) {
  std::size_t n = 0;
  for (Sequence* s : batch) {
    const StepEntryPlan e = plan_step_entry(g, *s);
    if (e.completes_tile && std::size_t(g.tiles_for(e.length_before)) >= s->blocks.size()) ++n;
  }
  return n;
}

}  // namespace kvarn_cl::cache
