// Launch policy of the decode-attention kernels (their programs: program_table.hpp): which fused
// kernel a launch takes, how many query heads one work-group serves, and how far a launch splits
// the context (flash-decoding).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"
#include "kvarn_cl/format.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {

// The fused decode kernel of an attend call: chosen per launch (automatic: nvidia_mma_sync where
// the device passes its capability check, nvidia_mma_sync.hpp; else attend_prefers_short_kernel),
// or forced (tests and benchmarks, opencl_backend_tuning.hpp) to attention.cl (tile slots),
// attention_short.cl, attention_mma.cl (inline PTX mma.sync) or attention_mma.cl with emulated
// primitives (any device; slow).
enum class AttendKernel {
  automatic,
  tile_slots,
  short_context,
  nvidia_mma_sync,
  nvidia_mma_sync_emulated
};

// What a kernel variant needs from the device beyond OpenCL C 1.2.
enum class Capability {
  portable,         // nothing
  nvidia_mma_sync,  // NVIDIA's OpenCL C compiler accepting inline PTX mma.sync (nvidia_mma_sync.hpp)
};
const char* to_string(Capability capability);

// The launch descriptor of a fused decode kernel: its program, which of the program's kernels is
// the split kernel (program_def(program).kernels; its work-group: kernel_work_group), how many
// query heads one work-group serves, how far a launch splits the context, and what the device
// must have. The host derives every launch of that kernel from this and nothing else.
struct AttendDescriptor {
  AttendKernel kernel;
  Program program;
  const char* variant;  // how `kvarn-cl info` names it
  std::size_t split_kernel;
  int (*heads_per_group)(int q_per_kv);
  int (*splits)(const CodecParams& params, std::size_t groups_without_split, int max_units,
                const DeviceCapabilities& caps);
  Capability requires;
  bool in_policy;  // whether AttendKernel::automatic may pick it (not the emulated twin: tests)
};
// Every fused kernel (not automatic), in AttendKernel order.
const std::vector<AttendDescriptor>& attend_descriptors();
const AttendDescriptor& attend_descriptor(AttendKernel kernel);
// The kernels the automatic policy can pick on a device, given its capability checks: the
// nvidia_mma_sync kernel where the device has it, else the portable ones
// (OpenCLBackend::attend_kernel_for decides among them per launch).
std::vector<AttendKernel> attend_policy_kernels(bool has_nvidia_mma_sync);

// Work-group sizes of the attention programs' kernels (program_table.cpp hands them to the
// sources: AT_WG, MW, AT_MWG) and their derived constants (AT_NS, AT_RED), planned from the
// device's limits so that every portable program fits 16 KiB of local memory; on devices with
// 32 KiB or more (SPEC §6; NVIDIA, PoCL) the plans are those the kernels were tuned with.
// attention.cl: 64 items (AT_NS = 64 / AT_IPS slots), or 32 or 16 where its local memory
// (attend_tile_slots_local_bytes) does not fit the device.
std::size_t attend_tile_slots_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
// Whether attention.cl fits the device at all: every geometry from 18 KiB of local memory; below,
// not k2v2 at D 256 (one slot of 32 items still needs 17,712 bytes), where the automatic
// policy takes attention_short.cl instead (OpenCLBackend::attend_kernel_for).
bool attend_tile_slots_fit(const CodecParams& params, const DeviceCapabilities& caps);
// attention.cl's local memory (its AtLocal) for a group of `work_group` items, in bytes, with
// the V accumulators in it or not (AT_ALOCAL).
std::size_t attend_tile_slots_local_bytes(const CodecParams& params, std::size_t work_group,
                                          bool accumulators_local = false);
// attention.cl AT_ALOCAL: the V accumulators in local memory at 4 query heads per group (where
// they are 32 registers per item, and the register count bounds the work-groups per compute
// unit). Possible where the plan's group (attend_tile_slots_work_group, which does not count
// them) still fits the device with them; the plans themselves stay the tuned ones.
bool attend_tile_slots_accumulators_local_fit(const ProgramArgs& args,
                                              const DeviceCapabilities& caps);
// Whether a build keeps them there: the launch asked for it (ProgramArgs::accumulators_local)
// and they fit.
bool attend_tile_slots_accumulators_local(const ProgramArgs& args, const DeviceCapabilities& caps);
// Where the V accumulators of a tile-slot launch live: chosen per launch (automatic:
// attend_tile_slots_prefers_local_accumulators), or forced (tests and benchmarks,
// opencl_backend_tuning.hpp). Forcing local memory where it does not fit builds registers.
enum class TileSlotAccumulators { automatic, registers, local };
// The steps (rounds of AT_NS units) the longest split of a launch runs: ceil(ceil(max_units /
// splits) / units_per_step).
int attend_tile_slots_steps_per_split(int max_units, int splits, int units_per_step);
// The automatic choice: local memory where each split runs at least
// kTileSlotLocalAccumulatorsMinSteps steps. The trade measured on the H100 (docs/PERFORMANCE.md,
// 2026-12-07, GQA 4 at 1-64 sequences of 4K-128K): local memory frees registers for more
// work-groups per compute unit (6 instead of 4), which pays over a long split (3 steps or more:
// 12-21 % faster); it costs a local read and write of the accumulators per step and halves the
// load rounds (AT_BATCH 8), which splits of one or two steps, where the launch is latency-bound,
// pay for without gaining (3-7 % slower; a tie at 2 steps of 4 x 32K).
constexpr int kTileSlotLocalAccumulatorsMinSteps = 3;
bool attend_tile_slots_prefers_local_accumulators(int steps_per_split);
// attention_short.cl (short-context and fp16 programs): the group (AT_WG) and the floats of its
// shared reduction buffer (AT_RED).
struct AttendShortPlan {
  std::size_t work_group;
  std::size_t reduction_floats;
  bool operator==(const AttendShortPlan& o) const {
    return work_group == o.work_group && reduction_floats == o.reduction_floats;
  }
};
// The first that fits the device of: 128 items with 4096 floats, 128 with 2048, 64 with 2048,
// 64 with 1024 (`params`: the program's geometry; the fp16 program's is k4v2_g128 at its head_dim).
AttendShortPlan attend_short_plan(const CodecParams& params, int heads_per_group,
                                  const DeviceCapabilities& caps);
// attention_short.cl's local memory (its AtLocal) under `plan`, in bytes.
std::size_t attend_short_local_bytes(const CodecParams& params, int heads_per_group,
                                     const AttendShortPlan& plan);
std::size_t attend_short_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
std::string attend_short_options(const ProgramArgs& args, const DeviceCapabilities& caps);
std::size_t attend_fp16_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
std::string attend_fp16_options(const ProgramArgs& args, const DeviceCapabilities& caps);
std::size_t warp_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
// The merge kernel: 256 items (4 split lanes x 64 channel items), 128 or 64 where the device
// allows fewer (fewer split lanes).
std::size_t merge_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
std::string attend_tile_slots_options(const ProgramArgs& args, const DeviceCapabilities& caps);

// How a launch ends (every split kernel, fused and fp16: the arguments out_f16, out, part,
// num_parts, tickets, finish). With one split the split kernel stores the output itself. With
// more, each split writes partials and then either
//   - the last split of each work-group's rows merges them in the same launch (in_kernel:
//     kernels/attention_merge.cl, at_last_split), or
//   - a second launch, kvarn_attend_merge, merges them (separate_launch).
// The in-kernel merge was written to save NVIDIA's dependent launch at short context; measured,
// it does not (below), so the policy takes it only at one split, where there is nothing to merge.
// AttendMerge::legacy is the path before the one-launch change, for A/B benchmarks: partials and
// the merge launch at every split count for attention_short.cl and the fp16 program, and at more
// than one split for the others.
enum class AttendMerge { automatic, in_kernel, separate_launch, legacy };
// The automatic choice: the split kernel stores the output itself at one split; more splits end
// with the merge launch. Measured on the H100 (docs/PERFORMANCE.md, decode-step run 2): the
// in-kernel merge was slower than the merge launch at every small shape of the A/B (1 and 8
// sequences x 1K and 4K, all three fused kernels; matrix units 27.5 against 22.9 us at 1 x 1K,
// 36.4 against 24.4 at 1 x 4K; why was not measured: the last group's serial merge and the
// ticket's fence are the suspects). It also relies on more than OpenCL 1.2 promises: its
// hand-off between work-groups (mem_fence, an atomic ticket, plain loads of the other groups'
// partials) assumes global-memory ordering across work-groups of one launch, which NVIDIA's
// membar.gl and PoCL give but the specification does not (Oclgrind reports the loads as races).
// So it stays a forced variant (OpenCLBackendTuning::force_attend_merge), never the policy's.
bool attend_merges_in_kernel(int splits);
// Whether a kernel stored the output itself at one split before the one-launch change (legacy).
bool attend_legacy_direct_store(AttendKernel kernel);

// Query heads per work-group: the largest divisor of q_per_kv (Hq/Hk) that is at most 4 (the
// per-channel query factors of all heads of a group are one float4 in local memory, AT_HPW).
// All query heads of a KV head share one read (and one decode) of each tile up to GQA ratio 4;
// ratio 8 reads each tile twice.
int attend_heads_per_group(int q_per_kv);

// Units (tiles of G tokens) one work-group processes per step (attention.cl AT_NS, passed to it
// by attend_tile_slots_options): one per slot of AT_IPS = max(G*key_bits/32, D/8) items in a
// group of attend_tile_slots_work_group items on that device (attention.cl checks the two agree).
int attend_units_per_step(const CodecParams& params, const DeviceCapabilities& caps);

// Query heads per work-group of the fp16 program: the largest divisor of q_per_kv that is at most
// 8 and keeps the rotated queries within 4 KiB of local memory (attention_short.cl AT_HPW, fp16 program).
int attend_fp16_heads_per_group(int q_per_kv, int head_dim);
// Context splits of the fp16 program: about 8 groups per compute unit, at least 2 units (of 128
// rows) per split, never more splits than units.
int attend_fp16_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);

// Context splits per (sequence, KV head, head block): enough work-groups to fill the device
// (about 12 per compute unit: two rounds of the 6 groups of 64 items an H100 SM holds), each
// split a whole number of steps of units_per_step units where the context allows, and never more
// splits than units. One split also saves the merge launch (the split kernel then
// writes the output itself), so short contexts at large batch take one.
int attend_splits(std::size_t groups_without_split, int max_units, int units_per_step,
                  unsigned compute_units);

// Whether a fused launch takes attention_short.cl: when there are few tiles per compute unit
// (work-groups without split x units of the longest sequence), where the launch is bound by the
// serial latency of one group's tile rather than by throughput. Thresholds from the measured
// H100 crossover of the two kernels (both forced on the same cache, opencl_attention_bench's
// short_kernel_us / slots_kernel_us): Llama-3-8B GQA 4: short wins up to 512 group-tiles, loses from 2,048 (8 per
// compute unit); MHA: short wins at 32 units per sequence up to batch 64 (4K: 126 vs 161 us at
// batch 8) and up to 32,768 group-tiles (128K batch 1: 419 vs 428 us), ties at 65,536 (32K
// batch 8) and loses beyond (256 per compute unit, or <= 32 units).
bool attend_prefers_short_kernel(std::size_t groups_without_split, int max_units,
                                 int heads_per_group, unsigned compute_units);

// --- matrix-unit fused kernel (kernels/attention_mma.cl; NVIDIA inline PTX, nvidia_mma_sync.hpp) ---
// Query heads per work-group: the largest divisor of q_per_kv that is at most 8 (4 heads fill
// one n-block of the mma with their high and low parts, 8 two n-blocks over the same codes).
int attend_mma_heads_per_group(int q_per_kv);
// Context splits: about 48 one-warp work-groups per compute unit, with at least 4 units (tiles)
// per split where that still gives 4 work-groups per compute unit, else 2, else 1 (a split's
// fixed cost is the query load, its partial and a longer merge; an idle compute unit costs more).
// Measured on the H200: docs/perf/h200_run2/ablation.
int attend_mma_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);

// Context splits of the short program: about 8 groups per compute unit, down to one unit per
// split (never more splits than units).
int attend_short_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);

}  // namespace kvarn_cl::opencl
