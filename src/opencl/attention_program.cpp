// Launch policy of the decode-attention kernels.
#include "opencl/attention_program.hpp"

#include <algorithm>

#include "kvarn_cl/error.hpp"

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

Program attend_program(AttendKernel kernel) {
  switch (kernel) {
    case AttendKernel::tile_slots: return Program::attend_tile_slots;
    case AttendKernel::short_context: return Program::attend_short;
    case AttendKernel::matrix_units: return Program::attend_matrix_units;
    case AttendKernel::matrix_units_emulated: return Program::attend_matrix_units_emulated;
    case AttendKernel::automatic: break;
  }
  throw InvalidArgument("attend_program: AttendKernel::automatic names no program");
}

namespace {
bool on_matrix_units(AttendKernel kernel) {
  return kernel == AttendKernel::matrix_units || kernel == AttendKernel::matrix_units_emulated;
}
}  // namespace

std::size_t attend_work_group(AttendKernel kernel) {
  return on_matrix_units(kernel)                 ? kAttendMmaWorkGroup
         : kernel == AttendKernel::short_context ? kAttendShortWorkGroup
                                                 : kAttendWorkGroup;
}

int attend_kernel_heads_per_group(AttendKernel kernel, int q_per_kv) {
  return on_matrix_units(kernel) ? attend_mma_heads_per_group(q_per_kv)
                                 : attend_heads_per_group(q_per_kv);
}

bool attend_legacy_direct_store(AttendKernel kernel) { return kernel != AttendKernel::short_context; }

bool attend_merges_in_kernel(int splits) { return splits <= 1; }

int attend_kernel_splits(AttendKernel kernel, const CodecParams& params,
                         std::size_t groups_without_split, int max_units, unsigned compute_units) {
  if (on_matrix_units(kernel)) return attend_mma_splits(groups_without_split, max_units, compute_units);
  if (kernel == AttendKernel::short_context)
    return attend_short_splits(groups_without_split, max_units, compute_units);
  return attend_splits(groups_without_split, max_units, attend_units_per_step(params), compute_units);
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

int attend_mma_splits(std::size_t groups_without_split, int max_units, unsigned compute_units) {
  if (max_units <= 1 || groups_without_split == 0) return 1;
  const std::size_t cu = std::max(1u, compute_units);
  const std::size_t want = (48 * cu + groups_without_split - 1) / groups_without_split;
  int units_per_split = 4;
  while (units_per_split > 1 &&
         groups_without_split * std::size_t(std::max(1, max_units / units_per_split)) < 4 * cu)
    units_per_split /= 2;
  const std::size_t most = std::size_t(std::max(1, max_units / units_per_split));
  return int(std::max<std::size_t>(1, std::min(want, most)));
}

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
