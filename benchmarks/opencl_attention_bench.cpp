// Decode-step attention on the default OpenCL device (KVARN_CL_PLATFORM / KVARN_CL_DEVICE choose),
// one layer, one query token per sequence, for the three ways to read a cache:
//   BM_Fused        Backend::attend straight from the KVarN records (k4v2_g128): one launch, or
//                   split + merge launch where the launch policy says (attention_program.hpp)
//   BM_Materialize  Backend::dequantize of every tile to fp16, then Backend::attend_fp16 over them
//                   (rotated frame); the sink/tail rows are not part of the materialized cache
//   BM_Fp16         Backend::attend_fp16 over a plain fp16 cache (what a user compares against)
//   BM_FusedAB      the small-work launch paths side by side (one launch vs split + merge launch,
//                   forced split counts), per fused kernel: see BM_FusedAB_body
//   BM_SlotSplits   the tile-slot kernel at forced split counts (GPU): see BM_SlotSplits_body
// Geometry: Llama-3-8B (Hq 32, Hk 8, D 128) and MHA (Hq = Hk = 32), contexts 1K/4K/32K/128K,
// batches 1/8/32/64 (combinations whose buffers exceed 60% of device memory are skipped).
// Counters (median over iterations of the event-profiled kernel time, all kernels of a step):
//   us_per_step, bytes (read, plus written+re-read for the materialized rows), GBps,
//   bw_floor_us = bytes / copy bandwidth measured in this run, fp32_floor_us = 4·D·Hq flops per
//   cached token / FMA rate measured in this run (GPU.md: ~67 TFLOP/s on the H100),
//   fraction_of_floor = max(floors) / us_per_step.
// On a CPU OpenCL device (PoCL) only small shapes run (`scaled` = 1).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/opencl_timing.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/device.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/opencl_backend.hpp"
#include "opencl/opencl_backend_tuning.hpp"
#include "opencl/program_table.hpp"

namespace {

using namespace kvarn_cl;

struct BenchEnv {
  std::unique_ptr<opencl::OpenCLBackend> backend;
  bool gpu = false;
  double copy_gbs = 0;   // read + write, GB/s
  double fma_gflops = 0; // measured fp32 rate, GFLOP/s (2 per fma)
  double mma_gflops = 0; // measured mma.sync m16n8k16 fp16->fp32 rate (0: no matrix units)
};
BenchEnv* g_env = nullptr;  // set by main for the run (no global cl:: objects)

opencl::internal::OpenCLBackendTuning tuning() {
  return opencl::internal::OpenCLBackendTuning(*g_env->backend);
}

// fp32 FMA rate: every work-item runs 8 independent fma chains; flops = 2 per fma.
const char* const kFmaProbe = R"CLC(
__kernel void fma_probe(__global float* out, int iters) {
  float a0 = get_global_id(0) * 1e-9f, a1 = a0 + 1e-3f, a2 = a0 + 2e-3f, a3 = a0 + 3e-3f;
  float a4 = a0 + 4e-3f, a5 = a0 + 5e-3f, a6 = a0 + 6e-3f, a7 = a0 + 7e-3f;
  const float m = 0.999f, c = 1e-4f;
  for (int i = 0; i < iters; ++i) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  out[get_global_id(0)] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}
)CLC";

double measure_fma_gflops(opencl::OpenCLBackend& be, bool gpu) {
  const std::size_t items = gpu ? std::size_t(be.caps().compute_units) * 2048 * 4 : 4096;
  const int iters = gpu ? 4096 : 256;
  opencl::internal::OpenCLBackendTuning t_(be);
  const double t = bench::probe_kernel_seconds(t_.context(), t_.queue(), kFmaProbe, "fma_probe",
                                               items, 256, iters);
  return double(items) * iters * 8 * 2 / t * 1e-9;
}

// mma.sync m16n8k16 fp16 -> fp32 rate through inline PTX (devices with matrix units only):
// every warp runs 4 independent accumulator chains; 4096 flops per mma.
const char* const kMmaProbe = R"CLC(
__kernel void mma_rate(__global float* out, int iters) {
  const uint lane = get_local_id(0);
  const uint a0 = 0x3C003C00u ^ lane, a1 = a0 ^ 1u, a2 = a0 ^ 2u, a3 = a0 ^ 3u;
  const uint b0 = 0x38003800u ^ lane, b1 = b0 ^ 1u;
  float c[16];
  for (int i = 0; i < 16; ++i) c[i] = 0.0f;
  for (int i = 0; i < iters; ++i) {
#define MMA(o, x0, x1, x2, x3) asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};" : "+f"(c[o]), "+f"(c[o + 1]), "+f"(c[o + 2]), "+f"(c[o + 3]) : "r"(x0), "r"(x1), "r"(x2), "r"(x3), "r"(b0), "r"(b1))
    MMA(0, a0, a1, a2, a3); MMA(4, a1, a2, a3, a0); MMA(8, a2, a3, a0, a1); MMA(12, a3, a0, a1, a2);
  }
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += c[i];
  out[get_global_id(0)] = s;
}
)CLC";

double measure_mma_gflops(opencl::OpenCLBackend& be) {
  const std::size_t items = std::size_t(be.caps().compute_units) * 4 * 128 * 4;
  const int iters = 4096;
  opencl::internal::OpenCLBackendTuning t_(be);
  const double t = bench::probe_kernel_seconds(t_.context(), t_.queue(), kMmaProbe, "mma_rate",
                                               items, 128, iters);
  return double(items / 32) * iters * 4 * 4096.0 / t * 1e-9;
}

// Fills [0, total) of dst with copies of its first `unit` bytes (doubling copies on the device).
void replicate(Buffer& dst, std::size_t unit, std::size_t total) {
  for (std::size_t have = unit; have < total; have *= 2)
    g_env->backend->copy(dst, 0, dst, have, std::min(have, total - have));
}

std::unique_ptr<Buffer> device_copies(const void* unit, std::size_t unit_bytes, std::size_t total) {
  auto b = g_env->backend->allocate(total);
  g_env->backend->write(*b, 0, unit, std::min(unit_bytes, total));
  replicate(*b, unit_bytes, total);
  return b;
}

std::vector<half_bits> random_rows(std::size_t rows, int D, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> x(rows * std::size_t(D));
  for (auto& v : x) v = n(rng);
  std::vector<half_bits> h(x.size());
  rotate_rows(x.data(), h.data(), rows, D);
  return h;
}

struct Shape {
  int hq, hk, D, context, batch;
};

// Context layout of one fused sequence: a full sink tile, whole tiles, a 64-token tail.
struct FusedLayout {
  int sink, blocks, tail;
  int tokens() const { return sink + blocks * 128 + tail; }
};
FusedLayout fused_layout(int context) {
  const int G = 128;
  FusedLayout l{G, std::max(0, (context - G - 64) / G), 64};
  return l;
}

// mma.sync instructions of one fused step on the matrix-unit kernel (attention_mma.cl): per tile
// and work-group, (G/16)·(D/16) for the scores and as many for the values, per n-block of 4 heads.
double mma_flops(const Shape& s, double tiles_per_kv_head) {
  const int hpw = opencl::attend_mma_heads_per_group(s.hq / s.hk);
  const double groups = double(s.hk) * (s.hq / s.hk / hpw), nblocks = (hpw + 3) / 4;
  const double per_tile = 2.0 * (128 / 16) * (s.D / 16) * nblocks;
  return tiles_per_kv_head * groups * per_tile * 4096.0;
}

// Counters of a row. mma_flops > 0: the step ran on the matrix-unit kernel, whose arithmetic
// floor is its mma instructions at the measured mma rate (not the fp32 lanes).
void set_counters(benchmark::State& state, const Shape& s, std::vector<double> times, double bytes,
                  double tokens, double mma_flops_of_step = 0) {
  const double t = bench::median(std::move(times));
  const double flops = 4.0 * s.D * s.hq * tokens;
  const double bw_floor = bytes / (g_env->copy_gbs * 1e9);
  const double fl_floor = flops / (g_env->fma_gflops * 1e9);
  const double mma_floor = mma_flops_of_step > 0 && g_env->mma_gflops > 0
                               ? mma_flops_of_step / (g_env->mma_gflops * 1e9) : 0;
  state.counters["us_per_step"] = t * 1e6;
  state.counters["bytes"] = bytes;
  state.counters["GBps"] = bytes / t * 1e-9;
  state.counters["bw_floor_us"] = bw_floor * 1e6;
  state.counters["fp32_floor_us"] = fl_floor * 1e6;
  if (mma_floor > 0) state.counters["mma_floor_us"] = mma_floor * 1e6;
  state.counters["fraction_of_floor"] = std::max(bw_floor, mma_floor > 0 ? mma_floor : fl_floor) / t;
  state.counters["fraction_of_bw"] = bw_floor / t;
  state.counters["splits"] = tuning().last_attend_splits();
  state.counters["scaled"] = g_env->gpu ? 0 : 1;
  state.SetLabel("Hq" + std::to_string(s.hq) + " Hk" + std::to_string(s.hk) + " D" +
                 std::to_string(s.D) + " ctx" + std::to_string(int(tokens / s.batch)) + " batch" +
                 std::to_string(s.batch) + " k4v2_g128");
}

// The compressed cache of a shape: records of B*blocks tiles per KV head, fp16 sink/tail.
struct FusedCache {
  CodecParams params;
  FusedLayout lay{};
  std::unique_ptr<Buffer> records, tables, info, sink, tail, q, out;
  std::size_t record_bytes = 0;
};

// Bytes a fused step reads (records, fp16 sink and tail rows, the queries) plus the output it
// writes, and the units (tiles and fp16 chunks) of one sequence.
double fused_step_bytes(const FusedCache& c, const Shape& s) {
  const double fp16_rows = double(s.batch) * s.hk * (c.lay.sink + c.lay.tail) * s.D * 2 * 2;
  return double(c.record_bytes) + fp16_rows + double(s.batch) * s.hq * s.D * 8;
}
double fused_units_per_sequence(const FusedCache& c) {
  return double(c.lay.blocks + (c.lay.sink + 127) / 128 + (c.lay.tail + 127) / 128);
}

FusedCache make_fused(const Shape& s) {
  auto& be = *g_env->backend;
  FusedCache c;
  c.params.preset = Preset::k4v2_g128;
  c.params.head_dim = s.D;
  const RecordLayout L = RecordLayout::make(c.params);
  c.lay = fused_layout(s.context);
  const std::size_t B = std::size_t(s.batch), Hk = std::size_t(s.hk), nb = std::size_t(c.lay.blocks);
  // 16 distinct tiles from the CPU codec, replicated over the pool.
  const std::size_t distinct = 16;
  const auto k = random_rows(distinct * 128, s.D, 1), v = random_rows(distinct * 128, s.D, 2);
  std::vector<std::uint8_t> rec(distinct * L.bytes);
  quantize_tiles(c.params, k.data(), v.data(), distinct, rec.data());
  const std::size_t blocks = std::max<std::size_t>(1, B * nb);
  c.record_bytes = B * nb * Hk * L.bytes;
  c.records = device_copies(rec.data(), rec.size(), blocks * Hk * L.bytes);
  std::vector<std::int32_t> tables(B * std::max<std::size_t>(nb, 1));
  for (std::size_t i = 0; i < tables.size(); ++i) tables[i] = std::int32_t(i);
  std::vector<SeqInfo> info;
  for (std::size_t b = 0; b < B; ++b) info.push_back(SeqInfo{int(b), c.lay.sink, int(nb), c.lay.tail});
  c.tables = be.allocate(tables.size() * 4);
  be.write(*c.tables, 0, tables.data(), tables.size() * 4);
  c.info = be.allocate(info.size() * sizeof(SeqInfo));
  be.write(*c.info, 0, info.data(), info.size() * sizeof(SeqInfo));
  const std::size_t sink_bytes = B * Hk * std::size_t(c.lay.sink) * s.D * 2;
  const std::size_t tail_bytes = B * Hk * std::size_t(c.lay.tail) * s.D * 2;
  c.sink = device_copies(k.data(), std::min(k.size() * 2, sink_bytes), sink_bytes);
  c.tail = device_copies(v.data(), std::min(v.size() * 2, tail_bytes), tail_bytes);
  std::vector<float> q(B * s.hq * s.D);
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& x : q) x = n(rng);
  c.q = be.allocate(q.size() * 4);
  be.write(*c.q, 0, q.data(), q.size() * 4);
  c.out = be.allocate(q.size() * 4);
  return c;
}

AttendArgs fused_args(FusedCache& c, const Shape& s) {
  AttendArgs a;
  a.params = c.params;
  a.num_seqs = s.batch;
  a.num_q_heads = s.hq;
  a.num_kv_heads = s.hk;
  a.scale = 1.0f / std::sqrt(float(s.D));
  a.q = c.q.get();
  a.out = c.out.get();
  a.records = c.records.get();
  a.block_tables = c.tables.get();
  a.max_blocks = std::max(1, c.lay.blocks);
  // K and V rows share one pool each here (sink = sink_v): the bytes read are the same.
  a.sink = c.sink.get();
  a.sink_v = c.sink.get();
  a.tail = c.tail.get();
  a.tail_v = c.tail.get();
  a.sink_capacity = c.lay.sink;
  a.tail_capacity = c.lay.tail;
  a.seq_info = c.info.get();
  return a;
}

// One fused step as warm-up (and build), then one per benchmark iteration, each timed from its
// first launch's start to its last launch's end (events); the times in seconds.
std::vector<double> time_fused_steps(benchmark::State& state, const AttendArgs& a) {
  auto& be = *g_env->backend;
  be.attend(a);
  be.finish();
  std::vector<double> times;
  for (auto _ : state) {
    be.attend(a);
    be.finish();
    const double t = bench::span_seconds(tuning().last_attend_split_event(), tuning().last_event());
    state.SetIterationTime(t);
    times.push_back(t);
  }
  return times;
}

void BM_Fused_body(benchmark::State& state, Shape s) {
  auto& be = *g_env->backend;
  FusedCache c = make_fused(s);
  const AttendArgs a = fused_args(c, s);
  const std::vector<double> times = time_fused_steps(state, a);
  using Kernel = opencl::AttendKernel;
  const Kernel ran = tuning().last_attend_kernel();
  state.counters["merge_launches"] = tuning().last_attend_merge() == opencl::AttendMerge::separate_launch ? 1 : 0;
  const double bytes = fused_step_bytes(c, s);
  const double units = double(s.batch) * fused_units_per_sequence(c);
  set_counters(state, s, times, bytes, double(s.batch) * c.lay.tokens(),
               ran == Kernel::nvidia_mma_sync ? mma_flops(s, units) : 0);
  // Median kernel time (µs) of 20 steps under whatever is forced now, after one warm-up step.
  auto forced_step_us = [&] {
    be.attend(a);
    be.finish();
    std::vector<double> forced;
    for (int i = 0; i < 20; ++i) {
      be.attend(a);
      be.finish();
      forced.push_back(bench::span_seconds(tuning().last_attend_split_event(), tuning().last_event()));
    }
    return bench::median(std::move(forced)) * 1e6;
  };
  // Every variant on the same cache, forced (20 steps each): the portable kernels of
  // attention.cl / attention_short.cl and, where the device has it, the matrix-unit kernel.
  std::vector<std::pair<Kernel, const char*>> variants{{Kernel::short_context, "short_kernel_us"},
                                                       {Kernel::tile_slots, "slots_kernel_us"}};
  if (be.runtime().nvidia_mma_sync().available) variants.push_back({Kernel::nvidia_mma_sync, "mma_kernel_us"});
  double portable = 1e30;
  for (const auto& [kernel, name] : variants) {
    tuning().force_attend_kernel(kernel);
    const double us = forced_step_us();
    state.counters[name] = us;
    if (kernel != Kernel::nvidia_mma_sync) portable = std::min(portable, us);
  }
  // The tile-slot kernel's two builds on the same cache (its V accumulators in registers and in
  // local memory, chosen per launch by the split length: attention_program.hpp), and which one
  // the policy took (slots_accumulators_local: 1 local memory, 0 registers).
  using Acc = opencl::TileSlotAccumulators;
  state.counters["slots_accumulators_local"] = tuning().last_tile_slot_accumulators() == Acc::local ? 1 : 0;
  tuning().force_attend_kernel(Kernel::tile_slots);
  for (const auto& [where, name] : {std::pair<Acc, const char*>{Acc::registers, "slots_registers_us"},
                                    {Acc::local, "slots_local_us"}}) {
    tuning().force_tile_slot_accumulators(where);
    state.counters[name] = forced_step_us();
  }
  tuning().force_tile_slot_accumulators(Acc::automatic);
  tuning().force_attend_kernel(Kernel::automatic);
  // The kernel the policy ran, with its splits merged in the launch and by a merge launch (both
  // forced; at one split neither runs): where attend_merges_in_kernel should draw its line.
  for (const auto& [merge, name] : {std::pair<opencl::AttendMerge, const char*>{opencl::AttendMerge::in_kernel, "merge_in_kernel_us"},
                                    {opencl::AttendMerge::separate_launch, "merge_launch_us"}}) {
    tuning().force_attend_merge(merge);
    state.counters[name] = forced_step_us();
  }
  tuning().force_attend_merge(opencl::AttendMerge::automatic);
  // The portable kernels' fraction of max(bandwidth floor, fp32 floor) (their arithmetic runs on
  // the fp32 lanes), for the issue's "portable >= 0.5 of the floor" goal.
  const double floor_portable = std::max(state.counters["bw_floor_us"].value, state.counters["fp32_floor_us"].value);
  state.counters["portable_fraction_of_floor"] = floor_portable / portable;
  state.counters["kernel"] = ran == Kernel::nvidia_mma_sync ? 2 : ran == Kernel::short_context ? 1 : 0;
}

// A/B of the small-work launch paths (issue 21, item 3), every variant in the same process on the
// same cache: a row per (shape, fused kernel, variant). Variants:
//   legacy      the path before the one-launch change (AttendMerge::legacy): the policy's splits,
//               then the merge launch (attention_short.cl: always; the others: at splits > 1)
//   policy      the launch policy now (AttendMerge::automatic): one split stores the output, more
//               merge in the split kernel's launch where the last group's share is short
//   separate    the policy's splits, the merge as a second launch (AttendMerge::separate_launch)
//   splitsN     N splits forced (1: one launch, no merge at all; N > 1: merged in the kernel)
// Counters: us_per_step (kernel time: first launch's start to the last launch's end, so a second
// launch's gap is counted), wall_us (attend() + finish() on the host, median), splits, launches.
enum class AbVariant { legacy, policy, separate, splits1, splits2, splits4, splits8 };

const char* ab_name(AbVariant v) {
  switch (v) {
    case AbVariant::legacy: return "legacy";
    case AbVariant::policy: return "policy";
    case AbVariant::separate: return "separate";
    case AbVariant::splits1: return "splits1";
    case AbVariant::splits2: return "splits2";
    case AbVariant::splits4: return "splits4";
    case AbVariant::splits8: return "splits8";
  }
  return "?";
}

void BM_FusedAB_body(benchmark::State& state, Shape s, opencl::AttendKernel kernel, AbVariant v) {
  using Merge = opencl::AttendMerge;
  auto& be = *g_env->backend;
  FusedCache c = make_fused(s);
  const AttendArgs a = fused_args(c, s);
  const int forced = v == AbVariant::splits1 ? 1 : v == AbVariant::splits2 ? 2
                     : v == AbVariant::splits4 ? 4 : v == AbVariant::splits8 ? 8 : 0;
  const Merge merge = v == AbVariant::legacy ? Merge::legacy
                      : v == AbVariant::separate ? Merge::separate_launch
                      : forced > 1 ? Merge::in_kernel : Merge::automatic;
  struct Reset {  // the forced settings end with the benchmark, whatever happens
    ~Reset() {
      tuning().force_attend_kernel(opencl::AttendKernel::automatic);
      tuning().force_attend_splits(0);
      tuning().force_attend_merge(opencl::AttendMerge::automatic);
    }
  } reset;
  tuning().force_attend_kernel(kernel);
  tuning().force_attend_splits(forced);
  tuning().force_attend_merge(merge);
  be.attend(a);  // build + warm-up
  be.finish();
  std::vector<double> times, walls;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    be.attend(a);
    be.finish();
    walls.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    const double t = bench::span_seconds(tuning().last_attend_split_event(), tuning().last_event());
    state.SetIterationTime(t);
    times.push_back(t);
  }
  const Merge ended = tuning().last_attend_merge();
  const double bytes = fused_step_bytes(c, s);
  const double units = double(s.batch) * fused_units_per_sequence(c);
  set_counters(state, s, times, bytes, double(s.batch) * c.lay.tokens(),
               kernel == opencl::AttendKernel::nvidia_mma_sync ? mma_flops(s, units) : 0);
  state.counters["wall_us"] = bench::median(std::move(walls)) * 1e6;
  state.counters["launches"] = ended == Merge::separate_launch ? 2 : 1;
  state.counters["merge_in_kernel"] = ended == Merge::in_kernel ? 1 : 0;
  state.counters["kernel"] = kernel == opencl::AttendKernel::nvidia_mma_sync ? 2
                             : kernel == opencl::AttendKernel::short_context ? 1 : 0;
}

// The tile-slot kernel (attention.cl, the portable kernel at long contexts) at N forced splits,
// its V accumulators in local memory whatever the split length (so that the split count is the
// only thing that changes), merged in the launch; N = 0: the policy's splits. From the slope of
// the time over N: what one split costs besides its tiles (query load and rotation, the slot
// merge, its partial, its share of the merge), at shapes where the policy runs few steps per split.
void BM_SlotSplits_body(benchmark::State& state, Shape s, int forced) {
  using Acc = opencl::TileSlotAccumulators;
  FusedCache c = make_fused(s);
  const AttendArgs a = fused_args(c, s);
  struct Reset {  // the forced settings end with the benchmark, whatever happens
    ~Reset() {
      tuning().force_attend_kernel(opencl::AttendKernel::automatic);
      tuning().force_tile_slot_accumulators(Acc::automatic);
      tuning().force_attend_splits(0);
      tuning().force_attend_merge(opencl::AttendMerge::automatic);
    }
  } reset;
  tuning().force_attend_kernel(opencl::AttendKernel::tile_slots);
  tuning().force_tile_slot_accumulators(Acc::local);
  tuning().force_attend_splits(forced);
  tuning().force_attend_merge(forced == 1 ? opencl::AttendMerge::automatic : opencl::AttendMerge::in_kernel);
  const std::vector<double> times = time_fused_steps(state, a);
  set_counters(state, s, times, fused_step_bytes(c, s), double(s.batch) * c.lay.tokens());
  state.counters["units_per_split"] =
      fused_units_per_sequence(c) / std::max(1, tuning().last_attend_splits());
}

void BM_Materialize_body(benchmark::State& state, Shape s) {
  auto& be = *g_env->backend;
  FusedCache c = make_fused(s);
  const std::size_t B = std::size_t(s.batch), Hk = std::size_t(s.hk), nb = std::size_t(c.lay.blocks);
  if (nb == 0) {
    state.SkipWithError("context too short for whole tiles");
    return;
  }
  std::vector<std::uint32_t> ids;  // (sequence, head, tile) order: rows land as [B][Hk][nb*G][D]
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t h = 0; h < Hk; ++h)
      for (std::size_t j = 0; j < nb; ++j) ids.push_back(std::uint32_t((b * nb + j) * Hk + h));
  const std::size_t rows_bytes = ids.size() * 128 * s.D * 2;
  auto k = be.allocate(rows_bytes), v = be.allocate(rows_bytes);
  std::vector<std::int32_t> lens(B, int(nb * 128));
  auto lb = be.allocate(B * 4);
  be.write(*lb, 0, lens.data(), B * 4);
  const AttendFp16Args a = AttendFp16Args::over(s.batch, s.hq, s.hk, s.D, *c.q, *c.out, *k, *v,
                                                 int(nb * 128), *lb, Frame::rotated);
  auto step = [&] {
    be.dequantize(c.params, *c.records, ids, Frame::rotated, *k, *v);  // reads its status word: synchronizes
    const double dq = bench::event_seconds(tuning().last_event());
    be.attend_fp16(a);
    be.finish();
    return dq + bench::span_seconds(tuning().last_attend_split_event(), tuning().last_event());
  };
  step();
  std::vector<double> times;
  for (auto _ : state) {
    const double t = step();
    state.SetIterationTime(t);
    times.push_back(t);
  }
  const double bytes = double(c.record_bytes) + 2.0 * 2.0 * double(rows_bytes) + double(B) * s.hq * s.D * 8;
  set_counters(state, s, times, bytes, double(B) * nb * 128);
}

void BM_Fp16_body(benchmark::State& state, Shape s) {
  auto& be = *g_env->backend;
  const std::size_t B = std::size_t(s.batch), Hk = std::size_t(s.hk), T = std::size_t(s.context);
  const std::size_t bytes_each = B * Hk * T * s.D * 2;
  const auto unit = random_rows(std::min<std::size_t>(T * Hk * B, 4096), s.D, 4);
  auto k = device_copies(unit.data(), unit.size() * 2, bytes_each);
  auto v = device_copies(unit.data(), unit.size() * 2, bytes_each);
  std::vector<std::int32_t> lens(B, int(T));
  auto lb = be.allocate(B * 4);
  be.write(*lb, 0, lens.data(), B * 4);
  std::vector<float> q(B * s.hq * s.D, 0.01f);
  auto qb = be.allocate(q.size() * 4), ob = be.allocate(q.size() * 4);
  be.write(*qb, 0, q.data(), q.size() * 4);
  const AttendFp16Args a = AttendFp16Args::over(s.batch, s.hq, s.hk, s.D, *qb, *ob, *k, *v, int(T),
                                                 *lb, Frame::original);
  be.attend_fp16(a);
  be.finish();
  std::vector<double> times;
  for (auto _ : state) {
    be.attend_fp16(a);
    be.finish();
    const double t = bench::span_seconds(tuning().last_attend_split_event(), tuning().last_event());
    state.SetIterationTime(t);
    times.push_back(t);
  }
  set_counters(state, s, times, 2.0 * double(bytes_each) + double(B) * s.hq * s.D * 8, double(B) * T);
}

// A shape that does not fit (a buffer above CL_DEVICE_MAX_MEM_ALLOC_SIZE, device OOM) is
// reported as skipped with the library's message instead of ending the run.
template <auto Body, class... Args>
void guarded(benchmark::State& state, Args... args) {
  try {
    Body(state, args...);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}
void BM_Fused(benchmark::State& state, Shape s) { guarded<BM_Fused_body>(state, s); }
void BM_FusedAB(benchmark::State& state, Shape s, opencl::AttendKernel kernel, AbVariant v) {
  guarded<BM_FusedAB_body>(state, s, kernel, v);
}
void BM_SlotSplits(benchmark::State& state, Shape s, int forced) {
  guarded<BM_SlotSplits_body>(state, s, forced);
}
void BM_Materialize(benchmark::State& state, Shape s) { guarded<BM_Materialize_body>(state, s); }
void BM_Fp16(benchmark::State& state, Shape s) { guarded<BM_Fp16_body>(state, s); }

// Local memory and private (spill/stack) bytes per item of every attention kernel at D = 128,
// as the driver reports them: they bound how many work-groups share a compute unit, which is
// what the latency-bound launches hinge on. Printed with the run's context lines.
void add_kernel_resource_context(opencl::OpenCLBackend& be) {
  opencl::internal::OpenCLBackendTuning t(be);
  const std::pair<opencl::Program, const char*> programs[] = {
      {opencl::Program::attend_tile_slots, "slots"},
      {opencl::Program::attend_short, "short"},
      {opencl::Program::attend_fp16, "fp16"}};
  for (int hpw : {1, 4})
    for (const auto& [program, name] : programs) {
      opencl::ProgramArgs args;
      args.params = CodecParams{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
      args.heads_per_group = hpw;
      const cl::Kernel& k = t.kernel(t.program_spec(program, args), opencl::program_def(program).kernels.at(0).name);
      benchmark::AddCustomContext(
          "kernel_" + std::string(name) + "_hpw" + std::to_string(hpw),
          "local_bytes=" + std::to_string(k.getWorkGroupInfo<CL_KERNEL_LOCAL_MEM_SIZE>(t.device())) +
              " private_bytes=" + std::to_string(k.getWorkGroupInfo<CL_KERNEL_PRIVATE_MEM_SIZE>(t.device())));
    }
}

void register_benchmarks(bool gpu) {
  const std::uint64_t mem = g_env->backend->caps().global_mem_bytes;
  const std::vector<int> contexts = gpu ? std::vector<int>{1024, 4096, 32768, 131072} : std::vector<int>{1024, 4096};
  const std::vector<int> batches = gpu ? std::vector<int>{1, 2, 4, 8, 16, 32, 64} : std::vector<int>{1, 8};
  const std::vector<std::pair<int, int>> heads =
      gpu ? std::vector<std::pair<int, int>>{{32, 8}, {32, 32}} : std::vector<std::pair<int, int>>{{32, 8}};
  const int iters = gpu ? 50 : 3;
  for (auto [hq, hk] : heads)
    for (int ctx : contexts)
      for (int b : batches) {
        const Shape s{hq, hk, 128, ctx, b};
        const double fp16 = 2.0 * b * hk * double(ctx) * 128 * 2;
        const std::string tag = (hq == hk ? "MHA" : "Llama3_8B") + std::string("/ctx") +
                                std::to_string(ctx) + "/batch" + std::to_string(b);
        // fp16 cache; the materialize path holds records + dequantized rows (~1.2x fp16).
        if (fp16 <= 0.6 * double(mem)) {
          benchmark::RegisterBenchmark(("BM_Fp16/" + tag).c_str(), BM_Fp16, s)
              ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMicrosecond);
        }
        benchmark::RegisterBenchmark(("BM_Fused/" + tag).c_str(), BM_Fused, s)
            ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMicrosecond);
        if (fp16 * 1.25 <= 0.6 * double(mem))
          benchmark::RegisterBenchmark(("BM_Materialize/" + tag).c_str(), BM_Materialize, s)
              ->UseManualTime()->Iterations(iters)->Unit(benchmark::kMicrosecond);
      }
  // The split sweep of the tile-slot kernel (BM_SlotSplits_body): Llama-3-8B, batch 8, 32K and
  // 128K (GPU only: the policy splits for hundreds of compute-unit slots).
  if (gpu)
    for (int ctx : {32768, 131072})
      for (int n : {0, 4, 8, 11, 16, 22, 32, 44, 64}) {
        const Shape s{32, 8, 128, ctx, 8};
        const std::string name = "BM_SlotSplits/Llama3_8B/ctx" + std::to_string(ctx) + "/batch8/" +
                                 (n == 0 ? std::string("policy") : "splits" + std::to_string(n));
        benchmark::RegisterBenchmark(name.c_str(), BM_SlotSplits, s, n)
            ->UseManualTime()->Iterations(50)->Unit(benchmark::kMicrosecond);
      }
  // The small-work A/B (BM_FusedAB_body): Llama-3-8B at 1K and 4K, batch 1 and 8, every fused
  // kernel the device runs (mma: the matrix-unit kernel, where the device has it).
  using Kernel = opencl::AttendKernel;
  std::vector<std::pair<Kernel, const char*>> kernels{{Kernel::short_context, "short"},
                                                     {Kernel::tile_slots, "slots"}};
  if (g_env->backend->runtime().nvidia_mma_sync().available)
    kernels.insert(kernels.begin(), {Kernel::nvidia_mma_sync, "mma"});
  for (int ctx : {1024, 4096})
    for (int b : {1, 8})
      for (const auto& [kernel, kname] : kernels)
        for (AbVariant v : {AbVariant::legacy, AbVariant::policy, AbVariant::separate, AbVariant::splits1,
                            AbVariant::splits2, AbVariant::splits4, AbVariant::splits8}) {
          const Shape s{32, 8, 128, ctx, b};
          const std::string name = "BM_FusedAB/Llama3_8B/ctx" + std::to_string(ctx) + "/batch" +
                                   std::to_string(b) + "/" + kname + "/" + ab_name(v);
          benchmark::RegisterBenchmark(name.c_str(), BM_FusedAB, s, kernel, v)
              ->UseManualTime()->Iterations(gpu ? 200 : 3)->Unit(benchmark::kMicrosecond);
        }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  BenchEnv env;
  try {
    std::unique_ptr<Backend> b = make_opencl_backend();
    env.backend.reset(static_cast<opencl::OpenCLBackend*>(b.release()));
    env.gpu = env.backend->caps().type != "cpu";
    opencl::internal::OpenCLBackendTuning t(*env.backend);
    env.copy_gbs = bench::measure_copy_bandwidth_gbs(t.context(), t.queue(),
                                                     env.gpu ? (std::size_t(1) << 30) : (std::size_t(64) << 20));
    env.fma_gflops = measure_fma_gflops(*env.backend, env.gpu);
    if (env.backend->runtime().nvidia_mma_sync().available) env.mma_gflops = measure_mma_gflops(*env.backend);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opencl_attention_bench: %s\n", e.what());
    return 1;
  }
  g_env = &env;
  benchmark::AddCustomContext("device", env.backend->caps().device_name);
  benchmark::AddCustomContext("driver", env.backend->caps().driver_version);
  benchmark::AddCustomContext("copy_GBps_read_plus_write", std::to_string(env.copy_gbs));
  benchmark::AddCustomContext("fp32_GFLOPs_measured", std::to_string(env.fma_gflops));
  benchmark::AddCustomContext("mma_GFLOPs_measured", std::to_string(env.mma_gflops));
  benchmark::AddCustomContext("matrix_units", env.backend->runtime().nvidia_mma_sync().reason);
  try {
    add_kernel_resource_context(*env.backend);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opencl_attention_bench: %s\n", e.what());
    return 1;
  }
  register_benchmarks(env.gpu);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_env = nullptr;
  return 0;
}
