// Launch policy of the decode-attention kernels.
#include "opencl/attention_program.hpp"

#include <algorithm>

#include "kvarn_cl/error.hpp"
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
  ProgramArgs args;
  args.params = params;
  return int(attend_tile_slots_work_group(args, DeviceCapabilities{})) / items_per_slot;
}

std::size_t attend_tile_slots_work_group(const ProgramArgs&, const DeviceCapabilities&) {
  return 64;
}
std::size_t attend_short_work_group(const ProgramArgs&, const DeviceCapabilities&) { return 128; }
// One warp: the mma.sync fragments are spread over 32 lanes.
std::size_t warp_work_group(const ProgramArgs&, const DeviceCapabilities&) { return 32; }

std::size_t merge_work_group(const ProgramArgs&, const DeviceCapabilities& caps) {
  // attention_merge.cl needs whole 64-item channel lanes.
  return std::max<std::size_t>(64, limited_work_group(256, caps));
}

std::string attend_tile_slots_options(const ProgramArgs& args, const DeviceCapabilities&) {
  return "-DAT_NS=" + std::to_string(attend_units_per_step(args.params));
}

const char* to_string(Capability capability) {
  switch (capability) {
    case Capability::portable:
      return "portable";
    case Capability::nvidia_mma_sync:
      return "nvidia_mma_sync";
  }
  return "?";
}

namespace {
int tile_slot_splits(const CodecParams& params, std::size_t groups, int max_units, unsigned cu) {
  return attend_splits(groups, max_units, attend_units_per_step(params), cu);
}
int short_splits(const CodecParams&, std::size_t groups, int max_units, unsigned cu) {
  return attend_short_splits(groups, max_units, cu);
}
int mma_splits(const CodecParams&, std::size_t groups, int max_units, unsigned cu) {
  return attend_mma_splits(groups, max_units, cu);
}
}  // namespace

const std::vector<AttendDescriptor>& attend_descriptors() {
  // nvidia_mma_sync's capability check is detect_nvidia_mma_sync (nvidia_mma_sync.hpp): vendor
  // NVIDIA and a probe of the same inline PTX that passes. Its emulated twin needs nothing (tests).
  static const std::vector<AttendDescriptor> table{
      {AttendKernel::tile_slots, Program::attend_tile_slots, "portable tile slots (attention.cl)",
       0, attend_heads_per_group, tile_slot_splits, Capability::portable, true},
      {AttendKernel::short_context, Program::attend_short,
       "portable short contexts (attention_short.cl)", 0, attend_heads_per_group, short_splits,
       Capability::portable, true},
      {AttendKernel::nvidia_mma_sync, Program::attend_nvidia_mma_sync,
       "nvidia_mma_sync (attention_mma.cl, inline PTX)", 0, attend_mma_heads_per_group, mma_splits,
       Capability::nvidia_mma_sync, true},
      {AttendKernel::nvidia_mma_sync_emulated, Program::attend_nvidia_mma_sync_emulated,
       "nvidia_mma_sync emulated (attention_mma.cl, portable primitives)", 0,
       attend_mma_heads_per_group, mma_splits, Capability::portable, false},
  };
  return table;
}

std::vector<AttendKernel> attend_policy_kernels(bool has_nvidia_mma_sync) {
  std::vector<AttendKernel> out;
  for (const AttendDescriptor& d : attend_descriptors())
    if (d.in_policy && (d.requires == Capability::nvidia_mma_sync) == has_nvidia_mma_sync)
      out.push_back(d.kernel);
  return out;
}

const AttendDescriptor& attend_descriptor(AttendKernel kernel) {
  for (const AttendDescriptor& d : attend_descriptors())
    if (d.kernel == kernel) return d;
  throw InvalidArgument("attend_descriptor: AttendKernel::automatic names no kernel");
}

bool attend_legacy_direct_store(AttendKernel kernel) {
  return kernel != AttendKernel::short_context;
}

bool attend_merges_in_kernel(int splits) { return splits <= 1; }

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
  const std::size_t steps =
      std::max<std::size_t>(1, (units + want * per_step - 1) / (want * per_step));
  const std::size_t splits = (units + steps * per_step - 1) / (steps * per_step);
  return int(std::max<std::size_t>(1, std::min(splits, units)));
}

}  // namespace kvarn_cl::opencl
