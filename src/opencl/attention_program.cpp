// Launch policy of the decode-attention kernels.
#include "opencl/attention_program.hpp"

#include <algorithm>
#include <cstdint>

#include "kvarn_cl/error.hpp"
#include "opencl/codec_program.hpp"

namespace kvarn_cl::opencl {

int attend_heads_per_group(int q_per_kv) {
  for (int h = 4; h > 1; --h)
    if (q_per_kv % h == 0) return h;
  return 1;
}

namespace {

// Where a plan fits the device's local memory. 0 (capabilities not read from a device, e.g. the
// defaults of a unit test) is taken as SPEC §6's 32 KiB.
bool fits_local(std::size_t bytes, const DeviceCapabilities& caps) {
  const std::uint64_t device = caps.local_mem_bytes == 0 ? 32 * 1024 : caps.local_mem_bytes;
  return bytes <= device;
}
bool fits_items(std::size_t items, const DeviceCapabilities& caps) {
  return caps.max_work_group_size == 0 || items <= caps.max_work_group_size;
}

// attention.cl AT_IPS: items per slot, max(G·KB/32, D/8).
std::size_t tile_slot_items(const RecordLayout& l) {
  return std::size_t(std::max(l.group * l.k_bits / 32, l.head_dim / 8));
}

// The fp16 program's geometry: k4v2_g128 at head_dim (Geometry::head_dim, program_table.cpp).
CodecParams fp16_geometry(int head_dim) {
  return CodecParams{Preset::k4v2_g128, head_dim, kDefaultSinkhornIters};
}

}  // namespace

std::size_t attend_tile_slots_local_bytes(const CodecParams& params, std::size_t work_group,
                                          bool accumulators_local) {
  // attention.cl AtLocal: float4 q[D], ak[NS·D], w[NS·G], cp[NS·IPS], mx[NS·KW], yp[NS·KW],
  // sp[NS·(KS-1)·G] (KS > 1), a[VC·WG] (AT_ALOCAL), ms[NS], lp[WG]; then int last, padded to
  // the struct's 16-byte alignment; and what a driver adds (kDriverLocalBytes).
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t D = std::size_t(l.head_dim), G = std::size_t(l.group);
  const std::size_t kw = G * std::size_t(l.k_bits) / 32, ips = tile_slot_items(l);
  const std::size_t ns = work_group / ips, ks = ips / kw;
  const std::size_t vc = D / ips;
  const std::size_t float4s = D + ns * D + ns * G + ns * ips + 2 * ns * kw + ns * (ks - 1) * G +
                              (accumulators_local ? vc * work_group : 0) + ns + work_group;
  return float4s * 16 + 16 + kDriverLocalBytes;
}

std::size_t attend_tile_slots_work_group(const ProgramArgs& args, const DeviceCapabilities& caps) {
  // 64 items wherever that fits (every geometry at 32 KiB or more: the plan of devices with SPEC
  // §6's 32 KiB and more is unchanged); else 32, else 16 (fewer slots per group, AT_NS), down to
  // one slot of AT_IPS items. Where none fits, 64, and the backend's check when it creates the
  // kernel names the need (OpenCLBackend::check_fits_device).
  const std::size_t ips = tile_slot_items(RecordLayout::make(args.params));
  for (std::size_t wg = 64; wg >= ips && wg >= 1; wg /= 2)
    if (fits_local(attend_tile_slots_local_bytes(args.params, wg), caps) && fits_items(wg, caps))
      return wg;
  return 64;
}

bool attend_tile_slots_accumulators_local_fit(const ProgramArgs& args,
                                              const DeviceCapabilities& caps) {
  if (args.heads_per_group != 4) return false;
  return fits_local(
      attend_tile_slots_local_bytes(args.params, attend_tile_slots_work_group(args, caps), true),
      caps);
}

bool attend_tile_slots_accumulators_local(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return args.accumulators_local && attend_tile_slots_accumulators_local_fit(args, caps);
}

int attend_tile_slots_steps_per_split(int max_units, int splits, int units_per_step) {
  const int units = std::max(0, max_units), s = std::max(1, splits),
            per = std::max(1, units_per_step);
  const int per_split = (units + s - 1) / s;
  return (per_split + per - 1) / per;
}

bool attend_tile_slots_prefers_local_accumulators(int steps_per_split) {
  return steps_per_split >= kTileSlotLocalAccumulatorsMinSteps;
}

bool attend_tile_slots_fit(const CodecParams& params, const DeviceCapabilities& caps) {
  ProgramArgs args;
  args.params = params;
  return fits_local(attend_tile_slots_local_bytes(params, attend_tile_slots_work_group(args, caps)),
                    caps);
}

int attend_units_per_step(const CodecParams& params, const DeviceCapabilities& caps) {
  ProgramArgs args;
  args.params = params;
  return int(attend_tile_slots_work_group(args, caps) /
             tile_slot_items(RecordLayout::make(params)));
}

namespace {
// attention_short.cl's checks of its geometry ("unsupported geometry"), for a plan of `wg`
// items and a reduction buffer of `red` floats.
bool short_plan_valid(const RecordLayout& l, int hpw, std::size_t wg, std::size_t red) {
  const std::size_t D = std::size_t(l.head_dim), G = std::size_t(l.group);
  const std::size_t tg = G / std::size_t(32 / l.k_bits);
  if (tg == 0 || wg % tg != 0) return false;
  const std::size_t cg = wg / tg;
  if (D % cg != 0 || (D / cg) % 4 != 0 || red < cg * G) return false;
  const std::size_t vcb = D / std::size_t(hpw <= 4 ? 16 : 8);
  if (wg % vcb != 0) return false;
  const std::size_t vtg = wg / vcb;
  return G % vtg == 0 && red >= vtg * D && red >= wg;
}
}  // namespace

std::size_t attend_short_local_bytes(const CodecParams& params, int heads_per_group,
                                     const AttendShortPlan& plan) {
  // attention_short.cl AtLocal: float q[HPW·D], red[AT_RED], sc[HPW·G], three D vectors, three G
  // vectors, m and alpha [HPW], lsum[VTG·HPW]; then int last; and what a driver adds
  // (kDriverLocalBytes).
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t D = std::size_t(l.head_dim), G = std::size_t(l.group);
  const std::size_t h = std::size_t(std::max(1, heads_per_group));
  const std::size_t vtg = plan.work_group / (D / (h <= 4 ? 16 : 8));
  return 4 * (h * D + plan.reduction_floats + h * G + 3 * D + 3 * G + 2 * h + vtg * h) + 4 +
         kDriverLocalBytes;
}

AttendShortPlan attend_short_plan(const CodecParams& params, int heads_per_group,
                                  const DeviceCapabilities& caps) {
  // The first plan that fits: 128 items with a 16 KiB reduction buffer is the plan of every
  // device with 32 KiB or more (unchanged there: it needs at most ~28 KiB); then a buffer of
  // 8 KiB (more K rounds of AT_RB heads, the final sum in more rounds of AT_RV heads), then 64
  // items with 8 or 4 KiB (the K and V phases' partials halve with the group). Where none fits,
  // the first, and the backend's check names the need.
  static const AttendShortPlan plans[] = {{128, 4096}, {128, 2048}, {64, 2048}, {64, 1024}};
  const RecordLayout l = RecordLayout::make(params);
  const int h = std::max(1, heads_per_group);
  for (const AttendShortPlan& p : plans)
    if (short_plan_valid(l, h, p.work_group, p.reduction_floats) &&
        fits_local(attend_short_local_bytes(params, h, p), caps) && fits_items(p.work_group, caps))
      return p;
  return plans[0];
}

std::size_t attend_short_work_group(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return attend_short_plan(args.params, args.heads_per_group, caps).work_group;
}
std::string attend_short_options(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return "-DAT_RED=" +
         std::to_string(
             attend_short_plan(args.params, args.heads_per_group, caps).reduction_floats);
}
std::size_t attend_fp16_work_group(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return attend_short_plan(fp16_geometry(args.params.head_dim), args.heads_per_group, caps)
      .work_group;
}
std::string attend_fp16_options(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return "-DAT_RED=" + std::to_string(attend_short_plan(fp16_geometry(args.params.head_dim),
                                                        args.heads_per_group, caps)
                                          .reduction_floats);
}
// One warp: the mma.sync fragments are spread over 32 lanes.
std::size_t warp_work_group(const ProgramArgs&, const DeviceCapabilities&) { return 32; }

std::size_t merge_work_group(const ProgramArgs&, const DeviceCapabilities& caps) {
  // attention_merge.cl needs whole 64-item channel lanes.
  return std::max<std::size_t>(64, limited_work_group(256, caps));
}

std::string attend_tile_slots_options(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return "-DAT_NS=" + std::to_string(attend_units_per_step(args.params, caps)) +
         (attend_tile_slots_accumulators_local(args, caps) ? " -DAT_ALOCAL=1" : "");
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
int tile_slot_splits(const CodecParams& params, std::size_t groups, int max_units,
                     const DeviceCapabilities& caps) {
  return attend_splits(groups, max_units, attend_units_per_step(params, caps), caps.compute_units);
}
int short_splits(const CodecParams&, std::size_t groups, int max_units,
                 const DeviceCapabilities& caps) {
  return attend_short_splits(groups, max_units, caps.compute_units);
}
int mma_splits(const CodecParams&, std::size_t groups, int max_units,
               const DeviceCapabilities& caps) {
  return attend_mma_splits(groups, max_units, caps.compute_units);
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
  // 12 per compute unit: two rounds of the 6 groups of 64 items an H100 SM holds (159 registers
  // per item with AT_ALOCAL); at 8 the second round was a third full. Measured on the H100
  // against 8 (2026-12-07, docs/PERFORMANCE.md): 11-16 % faster at batch 8 (32K and 128K, GQA 4
  // and MHA), within 5 % elsewhere.
  const std::size_t target = std::size_t(std::max(1u, compute_units)) * 12;
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
