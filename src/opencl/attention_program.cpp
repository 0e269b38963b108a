// Build options and launch policy of the decode-attention kernels.
#include "opencl/attention_program.hpp"

#include <algorithm>

#include "opencl/codec_program.hpp"

namespace kvarn_cl::opencl {

int attend_heads_per_group(int q_per_kv) {
  for (int h = 4; h > 1; --h)
    if (q_per_kv % h == 0) return h;
  return 1;
}

int attend_units_per_step(const CodecParams& params) {
  const RecordLayout L = RecordLayout::make(params);
  const int key_words = L.group * L.k_bits / 32;
  const int items_per_slot = std::max(key_words, L.head_dim / 8);
  return kAttendWorkGroup / items_per_slot;
}

namespace {
std::string attend_options(const CodecParams& params, int heads_per_group, bool unroll) {
  return geometry_options(params) + " -DAT_HPW=" + std::to_string(heads_per_group) +
         (unroll ? " -DAT_UNROLL=1" : "");
}
}  // namespace

ProgramSpec attend_records_program(const CodecParams& params, int heads_per_group, bool unroll) {
  return {{"common.cl", "attention_merge.cl", "attention.cl"}, attend_options(params, heads_per_group, unroll)};
}

ProgramSpec attend_records_short_program(const CodecParams& params, int heads_per_group) {
  return {{"common.cl", "attention_merge.cl", "attention_short.cl"}, attend_options(params, heads_per_group, false)};
}

bool attend_prefers_short_kernel(std::size_t groups_without_split, int max_units,
                                 int heads_per_group, unsigned compute_units) {
  const std::size_t cu = std::max(1u, compute_units);
  const std::size_t group_tiles = groups_without_split * std::size_t(std::max(0, max_units));
  if (heads_per_group <= 1) return max_units <= 32 || group_tiles <= 256 * cu;
  return group_tiles <= 8 * cu;
}

int attend_short_splits(std::size_t groups_without_split, int max_units, unsigned compute_units) {
  // Down to one unit per split: this kernel runs only where the launch is latency-bound, and a
  // unit fewer per group saves a whole serial tile (load, reductions, softmax) while the merge
  // of a few more partials costs next to nothing.
  if (max_units <= 1 || groups_without_split == 0) return 1;
  const std::size_t target = std::size_t(std::max(1u, compute_units)) * 8;
  const std::size_t want = (target + groups_without_split - 1) / groups_without_split;
  return int(std::max<std::size_t>(1, std::min(want, std::size_t(max_units))));
}

int attend_fp16_heads_per_group(int q_per_kv, int head_dim) {
  for (int h = 8; h > 1; --h)
    if (q_per_kv % h == 0 && h * head_dim <= 1024) return h;
  return 1;
}

ProgramSpec attend_fp16_program(int head_dim, int heads_per_group, bool /*unroll*/) {
  // Units of 128 rows: the k4v2_g128 geometry supplies KV_D and KV_G = 128 (record fields unused).
  CodecParams p;
  p.preset = Preset::k4v2_g128;
  p.head_dim = head_dim;
  // The fp16 kernel shares attention_short.cl's unit code; AT_PREFETCH_FP16 makes it prefetch
  // fp16 V rows (its only kind of unit) instead of record code words.
  return {{"common.cl", "attention_merge.cl", "attention_short.cl"},
          geometry_options(p) + " -DAT_HPW=" + std::to_string(heads_per_group) +
              " -DAT_PREFETCH_FP16=1"};
}

int attend_fp16_splits(std::size_t groups_without_split, int max_units, unsigned compute_units) {
  if (max_units <= 1 || groups_without_split == 0) return 1;
  const std::size_t target = std::size_t(std::max(1u, compute_units)) * 8;
  const std::size_t want = (target + groups_without_split - 1) / groups_without_split;
  const std::size_t most = std::size_t(std::max(1, max_units / 2));
  return int(std::max<std::size_t>(1, std::min(want, most)));
}

int attend_mma_heads_per_group(int q_per_kv) {
  for (int h = 8; h > 1; --h)
    if (q_per_kv % h == 0) return h;
  return 1;
}

ProgramSpec attend_records_mma_program(const CodecParams& params, int heads_per_group, bool emulate) {
  return {{"common.cl", "attention_merge.cl", "mma_primitives.cl", "attention_mma.cl"},
          geometry_options(params) + " -DAT_HPW=" + std::to_string(heads_per_group) +
              (emulate ? " -DAT_MMA_EMULATE=1" : "")};
}

int attend_mma_splits(std::size_t groups_without_split, int max_units, unsigned compute_units) {
  if (max_units <= 1 || groups_without_split == 0) return 1;
  const std::size_t target = std::size_t(std::max(1u, compute_units)) * 24;
  const std::size_t want = (target + groups_without_split - 1) / groups_without_split;
  const std::size_t most = std::size_t(std::max(1, max_units / 4));
  return int(std::max<std::size_t>(1, std::min(want, most)));
}

ProgramSpec copy_rows_program() { return {{"copy_rows.cl"}, ""}; }

int attend_splits(std::size_t groups_without_split, int max_units, int units_per_step,
                  unsigned compute_units) {
  if (max_units <= 1 || groups_without_split == 0) return 1;
  const std::size_t target = std::size_t(std::max(1u, compute_units)) * 8;
  const std::size_t want = (target + groups_without_split - 1) / groups_without_split;
  if (want <= 1) return 1;
  // Steps per split so that `want` splits cover the context, then as few splits as cover it
  // with that many steps (whole steps: no slot idles but in the last one).
  const std::size_t per_step = std::size_t(std::max(1, units_per_step));
  const std::size_t units = std::size_t(max_units);
  const std::size_t steps = std::max<std::size_t>(1, (units + want * per_step - 1) / (want * per_step));
  const std::size_t splits = (units + steps * per_step - 1) / (steps * per_step);
  return int(std::max<std::size_t>(1, std::min(splits, units)));
}

}  // namespace kvarn_cl::opencl
