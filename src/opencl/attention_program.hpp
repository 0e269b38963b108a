// Programs and launch policy of the decode-attention kernels (kernels/attention.cl,
// kernels/attention_short.cl, which also holds the fp16 kernel): which build options a launch needs,
// which fused kernel it takes, how many query heads one work-group serves, and how far a launch
// splits the context (flash-decoding).
#pragma once

#include <cstddef>
#include <string>

#include "kvarn_cl/format.hpp"
#include "opencl/device_runtime.hpp"

namespace kvarn_cl::opencl {

constexpr int kAttendWorkGroup = 64;   // attention.cl AT_WG
constexpr int kAttendFp16WorkGroup = 128;  // attention_short.cl AT_WG
constexpr int kAttendShortWorkGroup = 128;  // attention_short.cl AT_WG
constexpr int kMergeWorkGroup = 256;   // attention_merge.cl AT_MWG
constexpr int kCopyRowsWorkGroup = 256;  // copy_rows.cl CR_WG

// Query heads per work-group: the largest divisor of q_per_kv (Hq/Hk) that is at most 4 (the
// per-channel query factors of all heads of a group are one float4 in local memory, AT_HPW).
// All query heads of a KV head share one read (and one decode) of each tile up to GQA ratio 4;
// ratio 8 reads each tile twice.
int attend_heads_per_group(int q_per_kv);

// Units (tiles of G tokens) one work-group processes per step (attention.cl AT_NS): one per
// slot of AT_IPS = max(G*key_bits/32, D/8) items in a group of kAttendWorkGroup.
int attend_units_per_step(const CodecParams& params);

// The fused program (common.cl + attention.cl) for a record geometry. unroll: partially unroll
// the channel and token loops (GPU devices; PoCL compiles much more slowly with it).
ProgramSpec attend_records_program(const CodecParams& params, int heads_per_group,
                                   bool unroll = false);
// Query heads per work-group of the fp16 program: the largest divisor of q_per_kv that is at most
// 8 and keeps the rotated queries within 4 KiB of local memory (attention_short.cl AT_HPW, fp16 program).
int attend_fp16_heads_per_group(int q_per_kv, int head_dim);
// The fp16 program (common.cl + attention_merge.cl + attention_short.cl with AT_PREFETCH_FP16) for a head_dim. `unroll` is accepted for
// symmetry with the fused program and changes nothing (its loops are unrolled on every device).
ProgramSpec attend_fp16_program(int head_dim, int heads_per_group, bool unroll = false);
// Context splits of the fp16 program: about 8 groups per compute unit, at least 2 units (of 128
// rows) per split, never more splits than units.
int attend_fp16_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);
// copy_rows.cl alone (needs no geometry).
ProgramSpec copy_rows_program();

// Context splits per (sequence, KV head, head block): enough work-groups to fill the device
// (about 8 per compute unit: a 64-item group holds ~100 registers per item and ~21 KiB of local
// memory), each split a whole number of steps of units_per_step units where the context allows,
// and never more splits than units. One split also saves the merge launch (the split kernel then
// writes the output itself), so short contexts at large batch take one.
int attend_splits(std::size_t groups_without_split, int max_units, int units_per_step,
                  unsigned compute_units);

// The short-context fused program (common.cl + attention_short.cl, kernel
// kvarn_attend_records_short): all 128 items of a group on one tile at a time. Same arguments
// as kvarn_attend_records but for the trailing (out_f16, out): it always writes split partials,
// merged by the program's kvarn_attend_merge.
ProgramSpec attend_records_short_program(const CodecParams& params, int heads_per_group);
// Whether a fused launch takes attention_short.cl: when there are few tiles per compute unit
// (work-groups without split x units of the longest sequence), where the launch is bound by the
// serial latency of one group's tile rather than by throughput. Thresholds from the measured
// H100 crossover of the two kernels (both forced, same cache, opencl_attention_bench run of
// 05:55 UTC): Llama-3-8B GQA 4: short wins up to 512 group-tiles, loses from 2,048 (8 per
// compute unit); MHA: short wins at 32 units per sequence up to batch 64 (4K: 126 vs 161 us at
// batch 8) and up to 32,768 group-tiles (128K batch 1: 419 vs 428 us), ties at 65,536 (32K
// batch 8) and loses beyond (256 per compute unit, or <= 32 units).
bool attend_prefers_short_kernel(std::size_t groups_without_split, int max_units,
                                 int heads_per_group, unsigned compute_units);
// --- matrix-unit fused program (kernels/attention_mma.cl; NVIDIA inline PTX, matrix_units.hpp) ---
constexpr int kAttendMmaWorkGroup = 32;  // attention_mma.cl MW: one warp
// Query heads per work-group: the largest divisor of q_per_kv that is at most 8 (4 heads fill
// one n-block of the mma with their high and low parts, 8 two n-blocks over the same codes).
int attend_mma_heads_per_group(int q_per_kv);
// common.cl + attention_merge.cl + mma_primitives.cl + attention_mma.cl for a record geometry;
// emulate: the primitives in portable OpenCL C (PoCL tests of the kernel's logic).
ProgramSpec attend_records_mma_program(const CodecParams& params, int heads_per_group,
                                       bool emulate = false);
// Context splits: enough one-warp work-groups to fill the device (about 24 per compute unit)
// while every split keeps at least 2 units where the context allows (a split's fixed cost is
// the query load and its partial).
int attend_mma_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);

// Context splits of the short program: about 8 groups per compute unit, down to one unit per
// split (never more splits than units).
int attend_short_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);

}  // namespace kvarn_cl::opencl
