// Decode attention on the OpenCL device against the CPU backend (the reference, SPEC §5):
// - attend (fused, from the records): identical AttendArgs content on both backends, GQA 1/3/4/8,
//   head_dim 64/128/256, presets k4v2_g128/k4v4_g128/k4v2_g64 (and k2v2), sinks and tails below,
//   at and across tile boundaries, many sequences of mixed lengths in one launch, forced splits and
//   the automatic choice, f32 and f16 output; repeated runs bit-identical;
// - attend_fp16 against kvarn_cl::exact_attention (original and rotated frame);
// - copy_rows against a host model, with in-place runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "common/scoped_env.hpp"
#include "common/test_support.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/denormal_decode.hpp"
#include "opencl/device_discovery.hpp"
#include "opencl/nvidia_mma_sync.hpp"
#include "opencl/opencl_backend_tuning.hpp"
#include "opencl_fixture.hpp"

namespace kvarn_cl::test {
namespace {

struct SeqShape {
  int sink_len, num_blocks, tail_len;
};

struct AttendCase {
  Preset preset;
  int head_dim, hq, hk;
  std::vector<SeqShape> seqs;
  int splits;  // 0 = automatic
  ElementType out_type;
  std::string name;
};

// Host copies of every AttendArgs buffer, built once and uploaded to both backends.
struct AttendData {
  CodecParams params;
  int S = 0, hq = 0, hk = 0, max_blocks = 1, sink_cap = 0, tail_cap = 0, slots = 0;
  std::vector<float> q;
  std::vector<std::uint8_t> records;
  std::vector<std::int32_t> tables;
  std::vector<SeqInfo> info;
  std::vector<half_bits> sink_k, sink_v, tail_k, tail_v;
};

AttendData make_data(const AttendCase& c, std::uint32_t seed) {
  AttendData d;
  d.params.preset = c.preset;
  d.params.head_dim = c.head_dim;
  const RecordLayout L = RecordLayout::make(d.params);
  const int D = c.head_dim, G = L.group;
  d.S = int(c.seqs.size());
  d.hq = c.hq;
  d.hk = c.hk;
  int total_blocks = 0;
  for (const SeqShape& s : c.seqs) {
    d.max_blocks = std::max(d.max_blocks, s.num_blocks);
    d.sink_cap = std::max(d.sink_cap, s.sink_len);
    d.tail_cap = std::max(d.tail_cap, s.tail_len);
    total_blocks += s.num_blocks;
  }
  d.sink_cap += 3;  // capacities larger than the lengths: rows beyond them must not be read
  d.tail_cap += 5;
  d.slots = d.S + 2;
  const int pool = total_blocks + 3;
  // Records of random rotated tiles, quantized by the CPU codec.
  const RotatedTiles tiles = make_rotated_tiles(d.params, std::size_t(pool) * c.hk, seed);
  d.records.resize(std::size_t(pool) * c.hk * L.bytes);
  quantize_tiles(d.params, tiles.k.data(), tiles.v.data(), std::size_t(pool) * c.hk,
                 d.records.data());
  // Blocks handed out in a shuffled order, slots permuted.
  std::mt19937 rng(seed);
  std::vector<int> blocks(static_cast<std::size_t>(pool)), slots(static_cast<std::size_t>(d.slots));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  std::shuffle(slots.begin(), slots.end(), rng);
  d.tables.assign(std::size_t(d.S) * d.max_blocks, 0);
  int next = 0;
  for (int s = 0; s < d.S; ++s) {
    const SeqShape& sh = c.seqs[std::size_t(s)];
    for (int j = 0; j < sh.num_blocks; ++j)
      d.tables[std::size_t(s) * d.max_blocks + j] = blocks[std::size_t(next++)];
    d.info.push_back(SeqInfo{slots[std::size_t(s)], sh.sink_len, sh.num_blocks, sh.tail_len});
  }
  auto rows = [&](int cap, std::uint32_t sd) {
    std::vector<float> f =
        gaussian_rows(std::size_t(d.slots) * c.hk * std::max(cap, 1), D, sd, {3, 17}, 6.0f);
    return to_half(f);
  };
  d.sink_k = rows(d.sink_cap, seed + 1);
  d.sink_v = rows(d.sink_cap, seed + 2);
  d.tail_k = rows(d.tail_cap, seed + 3);
  d.tail_v = rows(d.tail_cap, seed + 4);
  d.q = gaussian_rows(std::size_t(d.S) * c.hq, D, seed + 5);
  (void)G;
  return d;
}

// Runs attend on `be` with the host data uploaded to its buffers; returns the output as floats.
std::vector<float> run_attend(Backend& be, const AttendData& d, ElementType out_type,
                              bool host_indices = false) {
  auto up = [&](const void* p, std::size_t bytes) {
    auto b = be.allocate(bytes);
    if (bytes) be.write(*b, 0, p, bytes);
    return b;
  };
  const std::size_t D = std::size_t(d.params.head_dim), out_n = std::size_t(d.S) * d.hq * D;
  auto q = up(d.q.data(), d.q.size() * 4);
  auto rec = up(d.records.data(), d.records.size());
  auto tab = up(d.tables.data(), d.tables.size() * 4);
  auto info = up(d.info.data(), d.info.size() * sizeof(SeqInfo));
  auto sk = up(d.sink_k.data(), d.sink_k.size() * 2), sv = up(d.sink_v.data(), d.sink_v.size() * 2);
  auto tk = up(d.tail_k.data(), d.tail_k.size() * 2), tv = up(d.tail_v.data(), d.tail_v.size() * 2);
  // The output and a guard zone after it, NaN everywhere (all-ones bits): a launch that left an
  // output row unwritten fails the comparison, one that wrote past the output the guard check.
  const std::size_t out_bytes = out_n * (out_type == ElementType::f32 ? 4 : 2), guard = 4096;
  auto out = be.allocate(out_bytes + guard);
  const std::vector<std::uint8_t> nan_bytes(out_bytes + guard, 0xFF);
  be.write(*out, 0, nan_bytes.data(), nan_bytes.size());
  AttendArgs a;
  a.params = d.params;
  a.num_seqs = d.S;
  a.num_q_heads = d.hq;
  a.num_kv_heads = d.hk;
  a.scale = 1.0f / std::sqrt(float(D));
  a.q = q.get();
  a.out = out.get();
  a.out_type = out_type;
  a.records = rec.get();
  a.block_tables = tab.get();
  a.max_blocks = d.max_blocks;
  a.sink = sk.get();
  a.tail = tk.get();
  a.sink_v = sv.get();
  a.tail_v = tv.get();
  a.sink_capacity = d.sink_cap;
  a.tail_capacity = d.tail_cap;
  a.seq_info = info.get();
  if (host_indices) {  // the cache's way: host copies of the index data, no read-back
    a.host_seq_info = d.info.data();
    a.host_block_tables = d.tables.data();
  }
  be.attend(a);
  std::vector<std::uint8_t> after(guard);
  be.read(*out, out_bytes, after.data(), guard);
  EXPECT_EQ(std::count(after.begin(), after.end(), std::uint8_t(0xFF)), std::ptrdiff_t(guard))
      << "the launch wrote past the output";
  std::vector<float> r(out_n);
  if (out_type == ElementType::f32) {
    be.read(*out, 0, r.data(), out_n * 4);
  } else {
    std::vector<half_bits> h(out_n);
    be.read(*out, 0, h.data(), out_n * 2);
    r = to_float(h);
  }
  return r;
}

// Row r (one sequence and query head, D values): ||got - want|| and ||want||.
struct RowNorms {
  double error, reference;
};
RowNorms row_norms(const std::vector<float>& got, const std::vector<float>& want, int D,
                   std::size_t r) {
  double num = 0, den = 0;
  for (int d = 0; d < D; ++d) {
    const double e = double(got[r * D + d]) - want[r * D + d];
    num += e * e;
    den += double(want[r * D + d]) * want[r * D + d];
  }
  return {std::sqrt(num), std::sqrt(den)};
}

// The largest ||got - want|| / ||want|| of the rows.
double worst_row_error(const std::vector<float>& got, const std::vector<float>& want, int D) {
  double worst = 0;
  for (std::size_t r = 0; r < got.size() / D; ++r) {
    const RowNorms n = row_norms(got, want, D, r);
    worst = std::max(worst, n.error / std::max(n.reference, 1e-15));
  }
  return worst;
}

// Per (sequence, query head) row: ||got - want|| / ||want|| <= tol. The largest ratio is recorded
// as the test property max_row_rel_error (shows how much margin the bar leaves).
void expect_rows_close(const std::vector<float>& got, const std::vector<float>& want, int D,
                       double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t r = 0; r < got.size() / D; ++r) {
    const RowNorms n = row_norms(got, want, D, r);
    ASSERT_LE(n.error, tol * n.reference + 1e-7) << "row " << r;
  }
  ::testing::Test::RecordProperty("max_row_rel_error",
                                  std::to_string(worst_row_error(got, want, D)));
}

class FusedAttend : public ::testing::TestWithParam<AttendCase> {};

TEST_P(FusedAttend, MatchesCpuBackend) {
  const AttendCase& c = GetParam();
  const AttendData d = make_data(c, 1234);
  auto cpu = make_cpu_backend(CpuThreads{2});
  const std::vector<float> want = run_attend(*cpu, d, c.out_type);
  opencl::OpenCLBackend& cl = cl_backend();
  opencl::internal::OpenCLBackendTuning tuning(cl);
  using Kernel = opencl::AttendKernel;
  // Every fused kernel of attend_descriptors(), whichever the launch policy would pick for this
  // shape: the portable ones always; one that needs a capability (attention_mma.cl's inline PTX)
  // where the device passes its check (the H200 host); a test-only stand-in outside the policy
  // (attention_mma.cl with emulated primitives: the matrix-unit kernel's logic on any device)
  // only where no capability-gated kernel runs.
  // The emulation (on PoCL: slow to compile and run) runs on the cases that between them reach
  // every branch of attention_mma.cl: one and two n-blocks, 2- and 4-bit codes, G 64 and 128,
  // D 64/128/256, f16 output, splits, tails across a tile, many sequences.
  // KVARN_CL_TEST_ALL_EMULATED=1 runs it on every case.
  static const std::set<std::string> emulated_cases{"gqa4_split3_tail_across",
                                                    "mha_f16",
                                                    "gqa8",
                                                    "k2v2",
                                                    "k4v4_g64_d64",
                                                    "d256_gqa4",
                                                    "batch10_mixed"};
  // KVARN_CL_TEST_ALL_EMULATED=0 leaves the emulation out (CI's sanitizer pass: it checks host
  // code, and the emulated kernel's host side is the same as the real one's).
  const char* all = std::getenv("KVARN_CL_TEST_ALL_EMULATED");
  const bool none = all && std::string(all) == "0";
  using opencl::Capability;
  auto device_has = [&cl](Capability capability) {
    switch (capability) {  // a new capability must say here how the test detects it
      case Capability::portable:
        return true;
      case Capability::nvidia_mma_sync:
        return cl.runtime().nvidia_mma_sync().available;
    }
    return false;
  };
  bool gated_runs = false;
  for (const opencl::AttendDescriptor& desc : opencl::attend_descriptors())
    gated_runs = gated_runs || (desc.requires != Capability::portable && device_has(desc.requires));
  const bool emulate =
      !gated_runs && !none && (emulated_cases.count(c.name) || (all && std::string(all) == "1"));
  std::vector<const opencl::AttendDescriptor*> kernels;
  for (const opencl::AttendDescriptor& desc : opencl::attend_descriptors())
    if (device_has(desc.requires) && (desc.in_policy || emulate)) kernels.push_back(&desc);
  using Merge = opencl::AttendMerge;
  for (const opencl::AttendDescriptor* desc : kernels) {
    const Kernel kernel = desc->kernel;
    SCOPED_TRACE(desc->variant);
    // Every way a launch can end (attention_program.hpp, AttendMerge): the policy's, the merge in
    // the split kernel's launch (the last split of each group's rows), the merge launch, and the
    // path before the one-launch change.
    // KVARN_CL_TEST_IN_KERNEL_MERGE=0 leaves the forced in-kernel merge out (.ci/oclgrind.sh): its
    // hand-off between work-groups (a fence and an atomic ticket, then plain loads of the other
    // groups' partials) relies on more global-memory ordering than OpenCL 1.2 promises across
    // work-groups, and Oclgrind, which checks against the specification, reports those loads as
    // races. The library never chooses it by itself (attention_program.hpp).
    const char* in_kernel_env = std::getenv("KVARN_CL_TEST_IN_KERNEL_MERGE");
    const bool test_in_kernel = in_kernel_env == nullptr || std::string(in_kernel_env) != "0";
    using Acc = opencl::TileSlotAccumulators;
    Acc policy_accumulators = Acc::automatic;  // tile slots: the build the policy ran
    for (const Merge merge :
         {Merge::automatic, Merge::in_kernel, Merge::separate_launch, Merge::legacy}) {
      if (merge == Merge::in_kernel && !test_in_kernel) continue;
      SCOPED_TRACE(merge == Merge::automatic         ? "merge: automatic"
                   : merge == Merge::in_kernel       ? "merge: in kernel"
                   : merge == Merge::separate_launch ? "merge: separate launch"
                                                     : "merge: legacy");
      tuning.force_attend_kernel(kernel);
      tuning.force_attend_splits(c.splits);
      tuning.force_attend_merge(merge);
      const std::vector<float> got = run_attend(cl, d, c.out_type);
      const int used = tuning.last_attend_splits();
      const Kernel ran = tuning.last_attend_kernel();
      const Merge ended = tuning.last_attend_merge();
      if (merge == Merge::automatic) policy_accumulators = tuning.last_tile_slot_accumulators();
      // The second run passes the index data as host copies (no read-back): same launch, same
      // bits (also with the in-kernel merge: it sums the splits in split order, whichever came last).
      const std::vector<float> again = run_attend(cl, d, c.out_type, true);
      tuning.force_attend_merge(Merge::automatic);
      tuning.force_attend_splits(0);
      tuning.force_attend_kernel(Kernel::automatic);
      EXPECT_TRUE(ran == kernel);
      if (c.splits > 0) {
        int most = 0;
        for (const SeqShape& s : c.seqs) {
          const int G = preset_info(c.preset).group;
          most = std::max(most, (s.sink_len + G - 1) / G + s.num_blocks + (s.tail_len + G - 1) / G);
        }
        EXPECT_EQ(used, std::min(c.splits, std::max(most, 1)));
      }
      if (used == 1 && !(merge == Merge::legacy && !opencl::attend_legacy_direct_store(kernel))) {
        EXPECT_TRUE(ended == Merge::automatic) << "one split: the split kernel stores the output";
      } else if (merge == Merge::in_kernel) {
        EXPECT_TRUE(ended == Merge::in_kernel);
      } else if (merge != Merge::automatic) {
        EXPECT_TRUE(ended == Merge::separate_launch);
      }
      // f32: the CPU reference within 1e-4 relative (SPEC §5); f16: plus one fp16 rounding.
      expect_rows_close(got, want, c.head_dim, c.out_type == ElementType::f32 ? 1e-4 : 1.5e-3);
      EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)))
          << "repeated run is not bit-identical";
    }
    // attention.cl's other build: the V accumulators where the policy did not put them for this
    // shape (registers or local memory, AT_ALOCAL; at 4 query heads per group, where they fit),
    // with the policy's merge. The short splits of these cases mostly take registers, so this is
    // where the local-memory build is checked (and, under Oclgrind, raced).
    // KVARN_CL_TEST_OTHER_ACCUMULATORS (CI's slower lanes): 0 leaves it out, a comma-separated
    // list of case names keeps it for those cases only; unset, every case runs it.
    if (kernel != Kernel::tile_slots) continue;
    opencl::ProgramArgs fit;
    fit.params = d.params;
    fit.heads_per_group = desc->heads_per_group(c.hq / c.hk);
    if (!opencl::attend_tile_slots_accumulators_local_fit(fit, cl.caps())) {
      EXPECT_TRUE(policy_accumulators == Acc::registers);
      continue;
    }
    if (const char* only = std::getenv("KVARN_CL_TEST_OTHER_ACCUMULATORS")) {
      const std::string list = "," + std::string(only) + ",";
      if (list.find("," + c.name + ",") == std::string::npos) continue;
    }
    const Acc other = policy_accumulators == Acc::local ? Acc::registers : Acc::local;
    SCOPED_TRACE(other == Acc::local ? "accumulators: local memory" : "accumulators: registers");
    tuning.force_attend_kernel(kernel);
    tuning.force_attend_splits(c.splits);
    tuning.force_tile_slot_accumulators(other);
    const std::vector<float> got = run_attend(cl, d, c.out_type);
    const Acc used = tuning.last_tile_slot_accumulators();
    const std::vector<float> again = run_attend(cl, d, c.out_type, true);
    tuning.force_tile_slot_accumulators(Acc::automatic);
    tuning.force_attend_splits(0);
    tuning.force_attend_kernel(Kernel::automatic);
    EXPECT_TRUE(used == other);
    expect_rows_close(got, want, c.head_dim, c.out_type == ElementType::f32 ? 1e-4 : 1.5e-3);
    EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)))
        << "repeated run is not bit-identical";
  }
}

// The policy's merge: the split kernel stores the output at one split, more splits end with the
// merge launch (measured faster on the H100 than the in-kernel merge, attention_program.hpp).
TEST(OpenCLAttendPolicy, OneSplitStoresDirectlyMoreSplitsMergeInASecondLaunch) {
  EXPECT_TRUE(opencl::attend_merges_in_kernel(1));
  EXPECT_FALSE(opencl::attend_merges_in_kernel(2));
  EXPECT_FALSE(opencl::attend_merges_in_kernel(32));
}

// The launch policy picks the short-context kernel where few tiles per compute unit make a launch
// latency-bound (the H100 crossover of attention_program.hpp) and the tile-slot kernel elsewhere.
TEST(OpenCLAttendPolicy, ShortKernelOnlyForFewTilesPerComputeUnit) {
  // Llama-3-8B (8 KV heads, 4 query heads per group) on 132 compute units.
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(8, 8, 4, 132));     // ctx 1K, batch 1
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(64, 8, 4, 132));    // ctx 1K, batch 8
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(8, 32, 4, 132));    // ctx 4K, batch 1
  EXPECT_FALSE(opencl::attend_prefers_short_kernel(256, 8, 4, 132));  // ctx 1K, batch 32
  EXPECT_FALSE(opencl::attend_prefers_short_kernel(64, 32, 4, 132));  // ctx 4K, batch 8
  EXPECT_FALSE(opencl::attend_prefers_short_kernel(8, 256, 4, 132));  // ctx 32K, batch 1
  // MHA (32 heads, one per group).
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(2048, 8, 1, 132));     // ctx 1K, batch 64
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(32, 32, 1, 132));      // ctx 4K, batch 1
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(2048, 32, 1, 132));    // ctx 4K, batch 64
  EXPECT_TRUE(opencl::attend_prefers_short_kernel(32, 1024, 1, 132));    // ctx 128K, batch 1
  EXPECT_FALSE(opencl::attend_prefers_short_kernel(1024, 256, 1, 132));  // ctx 32K, batch 32
  EXPECT_FALSE(opencl::attend_prefers_short_kernel(256, 1024, 1, 132));  // ctx 128K, batch 8
}

// attention.cl's V accumulators follow the split length: a launch whose splits run fewer than
// kTileSlotLocalAccumulatorsMinSteps steps keeps them in registers, a longer one in local memory
// (where they fit: 4 query heads per group).
TEST(OpenCLAttendPolicy, TileSlotAccumulatorsFollowTheSplitLength) {
  opencl::OpenCLBackend& cl = cl_backend();
  opencl::internal::OpenCLBackendTuning tuning(cl);
  const CodecParams params{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
  opencl::ProgramArgs fit;
  fit.params = params;
  fit.heads_per_group = 4;
  if (!opencl::attend_tile_slots_accumulators_local_fit(fit, cl.caps()))
    GTEST_SKIP() << "no room for the accumulators in local memory on " << cl.caps().device_name;
  const int per_step = opencl::attend_units_per_step(params, cl.caps());
  const int min_steps = opencl::kTileSlotLocalAccumulatorsMinSteps;
  using Acc = opencl::TileSlotAccumulators;
  for (const int steps : {min_steps - 1, min_steps}) {
    // One sequence of steps * per_step record tiles, no sink or tail, one split.
    const AttendCase c{params.preset,    128,     8, 2, {{0, steps * per_step, 0}}, 1,
                       ElementType::f32, "policy"};
    const AttendData d = make_data(c, 99);
    tuning.force_attend_kernel(opencl::AttendKernel::tile_slots);
    tuning.force_attend_splits(1);
    run_attend(cl, d, c.out_type);
    tuning.force_attend_splits(0);
    tuning.force_attend_kernel(opencl::AttendKernel::automatic);
    EXPECT_TRUE(tuning.last_tile_slot_accumulators() ==
                (steps >= min_steps ? Acc::local : Acc::registers))
        << steps << " steps of " << per_step << " units";
  }
}

TEST(OpenCLAttendPolicy, MatrixUnitSplitsFillTheDeviceBeforeShorteningSplits) {
  // Llama-3-8B on 132 compute units (one group per KV head at 4 query heads per work-group).
  EXPECT_EQ(opencl::attend_mma_splits(8, 32, 132), 32);     // ctx 4K, batch 1: one tile a split
  EXPECT_EQ(opencl::attend_mma_splits(64, 32, 132), 16);    // ctx 4K, batch 8: two tiles
  EXPECT_EQ(opencl::attend_mma_splits(8, 256, 132), 128);   // ctx 32K, batch 1: two tiles
  EXPECT_EQ(opencl::attend_mma_splits(64, 256, 132), 64);   // ctx 32K, batch 8: four tiles
  EXPECT_EQ(opencl::attend_mma_splits(8, 1024, 132), 256);  // ctx 128K, batch 1: four tiles
  EXPECT_EQ(opencl::attend_mma_splits(512, 256, 132), 13);  // ctx 32K, batch 64: 48 per CU
  EXPECT_EQ(opencl::attend_mma_splits(512, 8, 132), 2);     // ctx 1K, batch 64: four tiles
  EXPECT_EQ(opencl::attend_mma_splits(512, 1, 132), 1);     // a single unit
  EXPECT_EQ(opencl::attend_mma_splits(0, 64, 132), 1);      // no groups
}

std::vector<AttendCase> fused_cases() {
  const ElementType f32 = ElementType::f32, f16 = ElementType::f16;
  return {
      // GQA 4, default preset: sink below a tile, tiles, tail across nothing; forced splits.
      {Preset::k4v2_g128, 128, 8, 2, {{100, 3, 37}}, 1, f32, "gqa4_nosplit"},
      {Preset::k4v2_g128, 128, 8, 2, {{128, 3, 129}}, 3, f32, "gqa4_split3_tail_across"},
      {Preset::k4v2_g128,
       128,
       8,
       2,
       {{128, 0, 0}, {5, 0, 0}, {128, 2, 1}, {1, 0, 0}},
       0,
       f32,
       "gqa4_mixed_auto"},
      // MHA and GQA 8; f16 output.
      {Preset::k4v2_g128, 128, 4, 4, {{128, 2, 60}, {128, 1, 127}}, 2, f16, "mha_f16"},
      {Preset::k4v2_g128, 128, 16, 2, {{128, 2, 128}, {64, 0, 0}}, 4, f32, "gqa8"},
      {Preset::k4v2_g128, 128, 6, 2, {{128, 3, 5}}, 2, f32, "gqa3_odd_ratio"},
      {Preset::k4v2_g128, 128, 4, 2, {{128, 2, 70}, {30, 0, 0}}, 0, f32, "gqa2"},
      // Other presets and head dims.
      {Preset::k4v4_g128, 128, 8, 2, {{128, 2, 10}, {128, 1, 0}}, 2, f32, "k4v4"},
      {Preset::k4v2_g64, 128, 8, 2, {{64, 3, 63}, {64, 1, 64}, {20, 0, 0}}, 0, f32, "k4v2_g64"},
      {Preset::k2v2_g128, 128, 8, 2, {{128, 2, 3}}, 2, f32, "k2v2"},
      {Preset::k4v2_g128, 64, 8, 1, {{128, 2, 17}, {128, 4, 0}}, 3, f16, "d64_gqa8"},
      {Preset::k4v2_g128, 256, 4, 1, {{128, 2, 90}}, 2, f32, "d256_gqa4"},
      {Preset::k4v4_g64, 64, 2, 2, {{64, 2, 33}, {10, 0, 0}}, 0, f32, "k4v4_g64_d64"},
      {Preset::k4v2_g128, 64, 2, 2, {{128, 1, 20}, {3, 0, 0}}, 1, f32, "d64_mha_nosplit"},
      // Many sequences of mixed lengths in one launch.
      {Preset::k4v2_g128,
       128,
       8,
       2,
       {{128, 5, 3},
        {2, 0, 0},
        {128, 0, 128},
        {128, 1, 0},
        {128, 7, 64},
        {77, 0, 0},
        {128, 2, 1},
        {128, 3, 100},
        {128, 0, 1},
        {128, 1, 127}},
       0,
       f32,
       "batch10_mixed"},
  };
}

INSTANTIATE_TEST_SUITE_P(OpenCL, FusedAttend, ::testing::ValuesIn(fused_cases()),
                         [](const ::testing::TestParamInfo<AttendCase>& i) {
                           return i.param.name;
                         });

// --- attend_fp16 -------------------------------------------------------------------------------

struct Fp16Case {
  int head_dim, hq, hk;
  std::vector<int> lens;
  int capacity, splits;
  Frame frame;
  ElementType out_type;
  std::string name;
};

class Fp16Attend : public ::testing::TestWithParam<Fp16Case> {};

TEST_P(Fp16Attend, MatchesExactAttention) {
  const Fp16Case& c = GetParam();
  const int D = c.head_dim, S = int(c.lens.size());
  const std::size_t rows = std::size_t(S) * c.hk * c.capacity;
  const std::vector<half_bits> kh = to_half(gaussian_rows(rows, D, 77, {5}, 8.0f));
  const std::vector<half_bits> vh = to_half(gaussian_rows(rows, D, 78));
  const std::vector<float> q = gaussian_rows(std::size_t(S) * c.hq, D, 79);
  const float scale = 1.0f / std::sqrt(float(D));
  opencl::OpenCLBackend& cl = cl_backend();
  auto kb = to_device(kh), vb = to_device(vh), qb = to_device(q), lb = to_device(c.lens);
  const std::size_t out_bytes = std::size_t(S) * c.hq * D * 4, guard = 4096;
  auto ob = cl.allocate(out_bytes + guard);  // the output and a guard zone after it
  AttendFp16Args a =
      AttendFp16Args::over(S, c.hq, c.hk, D, *qb, *ob, *kb, *vb, c.capacity, *lb, c.frame);
  a.out_type = c.out_type;
  opencl::internal::OpenCLBackendTuning tuning(cl);
  using Merge = opencl::AttendMerge;
  // KVARN_CL_TEST_IN_KERNEL_MERGE=0 (.ci/oclgrind.sh): the forced in-kernel merge left out, as in
  // FusedAttend (the fp16 program's split kernel hands partials between work-groups the same way).
  const char* in_kernel_env = std::getenv("KVARN_CL_TEST_IN_KERNEL_MERGE");
  const bool test_in_kernel = in_kernel_env == nullptr || std::string(in_kernel_env) != "0";
  for (const Merge merge :
       {Merge::automatic, Merge::in_kernel, Merge::separate_launch, Merge::legacy}) {
    if (merge == Merge::in_kernel && !test_in_kernel) continue;
    SCOPED_TRACE(merge == Merge::automatic         ? "merge: automatic"
                 : merge == Merge::in_kernel       ? "merge: in kernel"
                 : merge == Merge::separate_launch ? "merge: separate launch"
                                                   : "merge: legacy");
    const std::vector<std::uint8_t> nan_bytes(out_bytes + guard, 0xFF);
    cl.write(*ob, 0, nan_bytes.data(), nan_bytes.size());  // unwritten rows fail the check
    tuning.force_attend_splits(c.splits);
    tuning.force_attend_merge(merge);
    cl.attend_fp16(a);
    std::vector<std::uint8_t> after(guard);
    cl.read(*ob, out_bytes, after.data(), guard);
    EXPECT_EQ(std::count(after.begin(), after.end(), std::uint8_t(0xFF)), std::ptrdiff_t(guard))
        << "the launch wrote past the output";
    tuning.force_attend_merge(Merge::automatic);
    tuning.force_attend_splits(0);
    std::vector<float> got(std::size_t(S) * c.hq * D);
    if (c.out_type == ElementType::f32)
      got = from_device<float>(*ob, got.size());
    else
      got = to_float(from_device<half_bits>(*ob, got.size()));

    const std::vector<float> kf = to_float(kh), vf = to_float(vh);
    for (int s = 0; s < S; ++s) {
      const int T = c.lens[std::size_t(s)];
      // K/V of this sequence as [Hk][T][D] (exact_attention's layout), and q in the rows' frame.
      std::vector<float> ks(std::size_t(c.hk) * T * D), vs(ks.size());
      for (int h = 0; h < c.hk; ++h)
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d) {
            const std::size_t src = ((std::size_t(s) * c.hk + h) * c.capacity + t) * D + d;
            ks[(std::size_t(h) * T + t) * D + d] = kf[src];
            vs[(std::size_t(h) * T + t) * D + d] = vf[src];
          }
      std::vector<float> qs(q.begin() + std::ptrdiff_t(s) * c.hq * D,
                            q.begin() + std::ptrdiff_t(s + 1) * c.hq * D);
      if (c.frame == Frame::rotated)
        for (int h = 0; h < c.hq; ++h) fwht_inplace(qs.data() + std::size_t(h) * D, D);
      std::vector<float> want(std::size_t(c.hq) * D);
      exact_attention(qs.data(), ks.data(), vs.data(), c.hq, c.hk, D, T, scale, want.data());
      if (c.frame == Frame::rotated)
        for (int h = 0; h < c.hq; ++h) fwht_inplace(want.data() + std::size_t(h) * D, D);
      const std::vector<float> g(got.begin() + std::ptrdiff_t(s) * c.hq * D,
                                 got.begin() + std::ptrdiff_t(s + 1) * c.hq * D);
      expect_rows_close(g, want, D, c.out_type == ElementType::f32 ? 2e-5 : 1.5e-3);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    OpenCL, Fp16Attend,
    ::testing::Values(
        Fp16Case{128,
                 8,
                 2,
                 {1, 127, 128, 129, 300},
                 300,
                 0,
                 Frame::original,
                 ElementType::f32,
                 "gqa4_mixed"},
        Fp16Case{128, 8, 2, {700}, 704, 4, Frame::rotated, ElementType::f32, "gqa4_rotated_split4"},
        Fp16Case{64, 4, 4, {200, 33}, 256, 1, Frame::original, ElementType::f16, "mha_d64_f16"},
        // One head per group at D 64: the group (128 items) is wider than its output row.
        Fp16Case{64, 2, 2, {150, 7}, 160, 1, Frame::rotated, ElementType::f32, "mha_d64_split1"},
        Fp16Case{64, 2, 2, {300}, 300, 3, Frame::original, ElementType::f32, "mha_d64_split3"},
        Fp16Case{256, 8, 1, {260}, 260, 3, Frame::rotated, ElementType::f32, "gqa8_d256"}),
    [](const ::testing::TestParamInfo<Fp16Case>& i) { return i.param.name; });

// --- copy_rows ---------------------------------------------------------------------------------

TEST(OpenCLCopyRows, OneLaunchMatchesHostModel) {
  opencl::OpenCLBackend& cl = cl_backend();
  const std::size_t row_bytes = 256, rows = 5000;
  std::vector<std::uint8_t> a(rows * row_bytes), b(rows * row_bytes);
  std::mt19937 rng(9);
  for (auto& x : a) x = std::uint8_t(rng());
  for (auto& x : b) x = std::uint8_t(rng());
  auto da = to_device(a), db = to_device(b);
  // Between buffers (runs of 1, many and > one chunk of rows), then inside one buffer.
  const std::vector<RowRun> runs{
      {0, 10, 1}, {100, 200, 37}, {1000, 3000, 1500}, {7, 4999, 1}, {50, 60, 0}};
  cl.copy_rows(*da, *db, runs, row_bytes);
  const std::vector<RowRun> inplace{{4000, 100, 64}, {4500, 4200, 129}};
  cl.copy_rows(*da, *da, inplace, row_bytes);
  for (const RowRun& r : runs)
    std::copy_n(a.begin() + std::ptrdiff_t(r.src_row * row_bytes), r.rows * row_bytes,
                b.begin() + std::ptrdiff_t(r.dst_row * row_bytes));
  for (const RowRun& r : inplace)
    std::copy_n(a.begin() + std::ptrdiff_t(r.src_row * row_bytes), r.rows * row_bytes,
                a.begin() + std::ptrdiff_t(r.dst_row * row_bytes));
  EXPECT_EQ(from_device<std::uint8_t>(*db, b.size()), b);
  EXPECT_EQ(from_device<std::uint8_t>(*da, a.size()), a);
  // Out-of-range runs are rejected with the run named.
  try {
    cl.copy_rows(*da, *db, {{4999, 0, 2}}, row_bytes);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("runs[0]"), std::string::npos) << e.what();
  }
}

// The matrix-unit kernel on the device that has it (the NVIDIA H200 host); elsewhere this says
// why it does not run. FusedAttend covers every case with it where it is available.
TEST(OpenCLNvidiaMmaSync, ChosenAutomaticallyWhereAvailable) {
  opencl::OpenCLBackend& cl = cl_backend();
  const opencl::CapabilityCheck& mu = cl.runtime().nvidia_mma_sync();
  RecordProperty("matrix_units", mu.reason);
  AttendCase c{Preset::k4v2_g128, 128, 8, 2, {{128, 4, 17}}, 0, ElementType::f32, "auto"};
  const AttendData d = make_data(c, 77);
  auto cpu = make_cpu_backend(CpuThreads{2});
  const std::vector<float> want = run_attend(*cpu, d, c.out_type);
  const std::vector<float> got = run_attend(cl, d, c.out_type, true);
  expect_rows_close(got, want, c.head_dim, 1e-4);
  using Kernel = opencl::AttendKernel;
  const Kernel ran = opencl::internal::OpenCLBackendTuning(cl).last_attend_kernel();
  if (!mu.available) {
    // The fallback decision: no matrix units (PoCL, other vendors, a failed probe) -> portable.
    EXPECT_TRUE(ran == Kernel::tile_slots || ran == Kernel::short_context);
    GTEST_SKIP() << "no matrix-unit path on " << cl.caps().device_name << ": " << mu.reason;
  }
  EXPECT_TRUE(ran == Kernel::nvidia_mma_sync);
}

// The probe itself: its checks pass with the emulated primitives on any device; the inline-PTX
// build is rejected by non-NVIDIA compilers, which the probe reports as "no" without throwing.
TEST(OpenCLNvidiaMmaSync, ProbeVerdicts) {
  opencl::OpenCLBackend& cl = cl_backend();
  const opencl::CapabilityCheck emulated = opencl::run_mma_probe(cl.runtime(), true);
  EXPECT_TRUE(emulated.available) << emulated.reason;
  const opencl::CapabilityCheck native = opencl::run_mma_probe(cl.runtime(), false);
  const bool nvidia = cl.caps().device_vendor.find("NVIDIA") != std::string::npos;
  if (!nvidia) {
    EXPECT_FALSE(native.available) << native.reason;
    EXPECT_FALSE(native.reason.empty());
    EXPECT_FALSE(cl.runtime().nvidia_mma_sync().available);
  }
  RecordProperty("native_probe", native.reason);
}

// The `subgroups` variant (src/opencl/subgroups.hpp) against the portable reductions on the same
// device: a second device runtime over the same device with subgroups turned off (as
// KVARN_CL_DEVICE_LIMITS=subgroups=0 does) builds the portable programs. Every launch that runs a
// reduction of the variant (the short-context kernel's softmax maximum at 1, 2, 4 and 8 heads per
// group, the split merge after both fused kernels, the fp16 attention with splits) agrees with the
// portable one within 1e-6 relative (the maxima are exact; only the order of the merge's sum
// differs) and both with the CPU reference within SPEC §5. Skipped where the variant is not chosen.
TEST(OpenCLSubgroups, AgreesWithThePortablePathOnTheSameDevice) {
  opencl::OpenCLBackend& cl = cl_backend();
  const opencl::CapabilityCheck& sg = cl.runtime().subgroups();
  if (!sg.available)
    GTEST_SKIP() << "subgroups not used on " << cl.caps().device_name << ": " << sg.reason;
  DeviceCapabilities caps = cl.caps();
  opencl::apply_device_limits(caps, "subgroups=0");
  auto runtime =
      std::make_shared<opencl::DeviceRuntime>(cl.runtime().context(), cl.runtime().device(), caps);
  ASSERT_FALSE(runtime->subgroups().available);
  opencl::OpenCLBackend portable(
      runtime,
      cl::CommandQueue(cl.runtime().context(), cl.runtime().device(), CL_QUEUE_PROFILING_ENABLE));
  auto cpu = make_cpu_backend(CpuThreads{2});
  using Kernel = opencl::AttendKernel;
  using Merge = opencl::AttendMerge;
  const std::vector<AttendCase> cases{
      {Preset::k4v2_g128, 128, 4, 4, {{100, 3, 40}, {5, 1, 0}}, 3, ElementType::f32, "mha"},
      {Preset::k4v2_g128, 128, 4, 2, {{0, 4, 17}}, 4, ElementType::f32, "gqa2"},
      {Preset::k4v4_g64, 64, 8, 2, {{64, 5, 3}}, 3, ElementType::f32, "gqa4_d64"},
      {Preset::k4v2_g128, 256, 8, 1, {{20, 2, 90}}, 2, ElementType::f16, "gqa8_d256_f16"}};
  for (const AttendCase& c : cases) {
    SCOPED_TRACE(c.name);
    const AttendData d = make_data(c, 4321);
    const std::vector<float> want = run_attend(*cpu, d, c.out_type);
    for (Kernel kernel : {Kernel::short_context, Kernel::tile_slots}) {
      SCOPED_TRACE(kernel == Kernel::short_context ? "short contexts" : "tile slots");
      std::vector<float> got[2];
      opencl::OpenCLBackend* backends[2] = {&cl, &portable};
      for (int b = 0; b < 2; ++b) {
        opencl::internal::OpenCLBackendTuning tuning(*backends[b]);
        tuning.force_attend_kernel(kernel);
        tuning.force_attend_splits(c.splits);
        tuning.force_attend_merge(Merge::separate_launch);
        got[b] = run_attend(*backends[b], d, c.out_type);
        tuning.force_attend_merge(Merge::automatic);
        tuning.force_attend_splits(0);
        tuning.force_attend_kernel(Kernel::automatic);
        EXPECT_TRUE(tuning.last_attend_kernel() == kernel);
        expect_rows_close(got[b], want, c.head_dim, c.out_type == ElementType::f32 ? 1e-4 : 1.5e-3);
      }
      expect_rows_close(got[0], got[1], c.head_dim, c.out_type == ElementType::f32 ? 1e-6 : 1e-3);
    }
  }
  // The fp16 attention (attention_short.cl's softmax maximum and the merge) with splits.
  const int D = 128, hq = 8, hk = 2, T = 300, capacity = 304;
  const std::size_t rows = std::size_t(hk) * capacity;
  const std::vector<half_bits> kh = to_half(gaussian_rows(rows, D, 91, {5}, 8.0f));
  const std::vector<half_bits> vh = to_half(gaussian_rows(rows, D, 92));
  const std::vector<float> q = gaussian_rows(std::size_t(hq), D, 93);
  const std::vector<std::int32_t> lens{T};
  std::vector<float> got[2];
  opencl::OpenCLBackend* backends[2] = {&cl, &portable};
  for (int b = 0; b < 2; ++b) {
    Backend& be = *backends[b];
    auto up = [&](const void* p, std::size_t bytes) {
      auto buf = be.allocate(bytes);
      be.write(*buf, 0, p, bytes);
      return buf;
    };
    auto kb = up(kh.data(), kh.size() * 2), vb = up(vh.data(), vh.size() * 2);
    auto qb = up(q.data(), q.size() * 4), lb = up(lens.data(), lens.size() * 4);
    auto ob = be.allocate(std::size_t(hq) * D * 4);
    const AttendFp16Args a =
        AttendFp16Args::over(1, hq, hk, D, *qb, *ob, *kb, *vb, capacity, *lb, Frame::original);
    opencl::internal::OpenCLBackendTuning tuning(*backends[b]);
    tuning.force_attend_splits(3);
    tuning.force_attend_merge(Merge::separate_launch);
    be.attend_fp16(a);
    tuning.force_attend_merge(Merge::automatic);
    tuning.force_attend_splits(0);
    got[b].resize(std::size_t(hq) * D);
    be.read(*ob, 0, got[b].data(), got[b].size() * 4);
  }
  expect_rows_close(got[0], got[1], D, 1e-6);
}

// A runtime over the fixture's device whose denormal_decode check ran under
// KVARN_CL_DENORMAL_DECODE=`value` (the check reads it once, on the runtime's first use).
std::shared_ptr<opencl::DeviceRuntime> runtime_with_denormal_decode(opencl::OpenCLBackend& cl,
                                                                    const char* value) {
  auto runtime = std::make_shared<opencl::DeviceRuntime>(cl.runtime().context(),
                                                         cl.runtime().device(), cl.caps());
  const ScopedEnv env("KVARN_CL_DENORMAL_DECODE", value);
  (void)runtime->denormal_decode();
  return runtime;
}

// The policy of the `denormal_decode` variant (src/opencl/denormal_decode.hpp): asked for, it runs
// on a device that keeps denormals and passes the probe, and only the tile-slot attention program
// gets -DAT_DENORM=1; turned off, or under KVARN_CL_DEVICE_LIMITS=denormals=0, it never runs; left
// to the policy, it runs on GPUs only.
TEST(OpenCLDenormalDecode, ChosenByPolicyAndOnlyForTheTileSlotKernel) {
  opencl::OpenCLBackend& cl = cl_backend();
  opencl::ProgramArgs args;
  args.params = CodecParams{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
  args.heads_per_group = 4;
  const std::string define = "-DAT_DENORM=1";
  auto has_define = [&](opencl::DeviceRuntime& rt, opencl::Program p) {
    return opencl::program_spec(p, args, rt).options.find(define) != std::string::npos;
  };
  auto off = runtime_with_denormal_decode(cl, "0");
  EXPECT_FALSE(off->denormal_decode().available);
  EXPECT_NE(off->denormal_decode().reason.find("KVARN_CL_DENORMAL_DECODE=0"), std::string::npos);
  EXPECT_FALSE(has_define(*off, opencl::Program::attend_tile_slots));

  // A value that is none of 0, 1, off, on is named in the verdict and changes nothing.
  auto garbage = runtime_with_denormal_decode(cl, "yes");
  EXPECT_NE(garbage->denormal_decode().reason.find("KVARN_CL_DENORMAL_DECODE=yes is not 0, 1"),
            std::string::npos)
      << garbage->denormal_decode().reason;
  if (cl.caps().type != "gpu") {
    EXPECT_FALSE(garbage->denormal_decode().available);
  }

  auto asked = runtime_with_denormal_decode(cl, "1");
  const opencl::CapabilityCheck& a = asked->denormal_decode();
  RecordProperty("asked_for", a.reason);
  EXPECT_FALSE(a.reason.empty());
  if (!cl.caps().denormals) {
    EXPECT_FALSE(a.available);
  } else if (!a.available) {
    // A device that reports denormals but flushes them: the probe says so, nothing else.
    EXPECT_NE(a.reason.find("flushed"), std::string::npos) << a.reason;
  }
  EXPECT_EQ(has_define(*asked, opencl::Program::attend_tile_slots), a.available);
  for (opencl::Program p : {opencl::Program::attend_short, opencl::Program::attend_fp16,
                            opencl::Program::attend_nvidia_mma_sync, opencl::Program::rotate})
    EXPECT_FALSE(has_define(*asked, p));

  DeviceCapabilities caps = cl.caps();
  opencl::apply_device_limits(caps, "denormals=0");
  auto limited =
      std::make_shared<opencl::DeviceRuntime>(cl.runtime().context(), cl.runtime().device(), caps);
  const opencl::CapabilityCheck lim = [&] {
    const ScopedEnv env("KVARN_CL_DENORMAL_DECODE", "1");
    return opencl::detect_denormal_decode(*limited);
  }();
  EXPECT_FALSE(lim.available);
  EXPECT_NE(lim.reason.find("denormals"), std::string::npos) << lim.reason;

  // Left to the policy (this process's own runtime): GPUs only.
  if (std::getenv("KVARN_CL_DENORMAL_DECODE") == nullptr && cl.caps().type != "gpu") {
    EXPECT_FALSE(cl.runtime().denormal_decode().available) << cl.runtime().denormal_decode().reason;
  }
}

// The rate check runs on any device and times both launches (the policy consults it on GPUs
// only; what it finds is recorded, not asserted: speed is not a test's business).
TEST(OpenCLDenormalDecode, RateCheckTimesBothOperandKinds) {
  opencl::OpenCLBackend& cl = cl_backend();
  // Small (under Oclgrind too): 64 rounds, one work-group per compute unit.
  const opencl::DenormalRate rate = opencl::measure_denormal_rate(cl.runtime(), 64, 1);
  RecordProperty("denormal_us", std::to_string(rate.denormal_us));
  RecordProperty("normal_us", std::to_string(rate.normal_us));
  std::printf("  denormal operands %.1f us, normal %.1f us on %s\n", rate.denormal_us,
              rate.normal_us, cl.caps().device_name.c_str());
  EXPECT_GT(rate.denormal_us, 0.0);
  EXPECT_GT(rate.normal_us, 0.0);
}

// The variant's arithmetic (kernels/attention.cl under AT_DENORM) against the CPU reference and
// against the portable decode on the same device, in the tile-slot kernel: 4-bit K codes (8 per
// word, three from the shifted word) and 2-bit K codes (16 per word), 2- and 4-bit V codes in 8-,
// 16- and 32-bit words, G 64 and 128, D 64/128/256, 3 and 4 heads per group, sink and tail units,
// splits, and queries from 1e-6 to 1e6 in magnitude (the K factors' exponent follows them).
TEST(OpenCLDenormalDecode, AgreesWithCpuReferenceAndPortableDecode) {
  opencl::OpenCLBackend& cl = cl_backend();
  auto asked = runtime_with_denormal_decode(cl, "1");
  if (!asked->denormal_decode().available)
    GTEST_SKIP() << "denormal_decode cannot run on " << cl.caps().device_name << ": "
                 << asked->denormal_decode().reason;
  auto off = runtime_with_denormal_decode(cl, "0");
  auto queue = [&] {
    return cl::CommandQueue(cl.runtime().context(), cl.runtime().device(),
                            CL_QUEUE_PROFILING_ENABLE);
  };
  opencl::OpenCLBackend variant(asked, queue()), portable(off, queue());
  auto cpu = make_cpu_backend(CpuThreads{2});
  using Merge = opencl::AttendMerge;
  const ElementType f32 = ElementType::f32, f16 = ElementType::f16;
  const std::vector<AttendCase> cases{
      {Preset::k4v2_g128, 128, 8, 2, {{128, 3, 129}, {5, 0, 0}}, 3, f32, "gqa4_k4v2"},
      {Preset::k4v4_g128, 128, 8, 2, {{128, 2, 10}}, 2, f32, "gqa4_k4v4"},
      {Preset::k2v2_g128, 128, 8, 2, {{128, 2, 3}}, 2, f32, "gqa4_k2v2"},
      {Preset::k4v2_g128, 64, 8, 1, {{128, 2, 17}}, 2, f16, "gqa8_d64_f16"},
      {Preset::k4v4_g64, 256, 3, 1, {{64, 3, 33}}, 0, f32, "gqa3_k4v4_g64_d256"}};
  for (const AttendCase& c : cases) {
    for (const float q_scale : {1.0f, 1e-6f, 1e6f}) {
      if (q_scale != 1.0f && c.name != "gqa4_k4v2") continue;
      SCOPED_TRACE(c.name + " queries x" + std::to_string(q_scale));
      AttendData d = make_data(c, 2468);
      // 1e6 times a Gaussian query: the softmax is one-hot, and the scores' magnitude tests the
      // factors' exponent at its top; 1e-6: near-uniform weights and the exponent's other end.
      for (float& v : d.q) v *= q_scale;
      const std::vector<float> want = run_attend(*cpu, d, c.out_type);
      std::vector<float> got[2];
      opencl::OpenCLBackend* backends[2] = {&variant, &portable};
      for (int b = 0; b < 2; ++b) {
        opencl::internal::OpenCLBackendTuning tuning(*backends[b]);
        tuning.force_attend_kernel(opencl::AttendKernel::tile_slots);
        tuning.force_attend_splits(c.splits);
        tuning.force_attend_merge(Merge::separate_launch);
        got[b] = run_attend(*backends[b], d, c.out_type);
        tuning.force_attend_merge(Merge::automatic);
        tuning.force_attend_splits(0);
        tuning.force_attend_kernel(opencl::AttendKernel::automatic);
        EXPECT_TRUE(tuning.last_attend_kernel() == opencl::AttendKernel::tile_slots);
        SCOPED_TRACE(b == 0 ? "denormal_decode" : "portable decode");
        expect_rows_close(got[b], want, c.head_dim, c.out_type == f32 ? 1e-4 : 1.5e-3);
      }
      // Both decodes are exact; the sums round differently (the portable decode's "1 +" bias
      // cancels afterwards, which costs it more where weights are near-uniform: the 1e-6 queries).
      expect_rows_close(got[0], got[1], c.head_dim, c.out_type == f32 ? 1e-4 : 1.5e-3);
      if (c.out_type == f32)
        std::printf("  %s x%g: vs CPU %.2e (denormal_decode) %.2e (portable)\n", c.name.c_str(),
                    double(q_scale), worst_row_error(got[0], want, c.head_dim),
                    worst_row_error(got[1], want, c.head_dim));
    }
  }
}

TEST(OpenCLAttend, RejectsBadIndicesWithClearErrors) {
  AttendCase c{Preset::k4v2_g128, 64, 2, 1, {{128, 1, 3}}, 0, ElementType::f32, "bad"};
  AttendData d = make_data(c, 5);
  d.tables[0] = 999;
  for (const bool host : {false, true}) {  // read back, and the caller's host copies
    try {
      run_attend(cl_backend(), d, ElementType::f32, host);
      FAIL() << "expected InvalidArgument";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("block id of batch entry 0 is 999"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace kvarn_cl::test
