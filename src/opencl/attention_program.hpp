// Programs and launch policy of the decode-attention kernels (kernels/attention.cl,
// kernels/attention_fp16.cl): which build options a launch needs, how many query heads one
// work-group serves, and how far a launch splits the context (flash-decoding).
#pragma once

#include <cstddef>
#include <string>

#include "kvarn_cl/format.hpp"
#include "opencl/device_runtime.hpp"

namespace kvarn_cl::opencl {

constexpr int kAttendWorkGroup = 128;  // attention.cl AT_WG
constexpr int kMergeWorkGroup = 64;    // attention.cl AT_MWG
constexpr int kCopyRowsWorkGroup = 256;  // copy_rows.cl CR_WG

// Query heads per work-group: the largest divisor of q_per_kv (Hq/Hk) that is at most 8 and keeps
// the rotated queries within 4 KiB of local memory (AT_HPW). All query heads of a KV head share
// one read of each tile when q_per_kv itself qualifies (GQA up to 8 at head_dim <= 128).
int attend_heads_per_group(int q_per_kv, int head_dim);

// The fused program (common.cl + attention.cl) for a record geometry.
ProgramSpec attend_records_program(const CodecParams& params, int heads_per_group);
// The fp16 program (common.cl + attention.cl + attention_fp16.cl) for a head_dim.
ProgramSpec attend_fp16_program(int head_dim, int heads_per_group);
// copy_rows.cl alone (needs no geometry).
ProgramSpec copy_rows_program();

// Context splits per (sequence, KV head, head block): enough work-groups to fill the device
// (about 8 per compute unit, the occupancy of a 128-item group with ~27 KiB of local memory on
// a GPU), but at least 2 units (tiles) per split so that the per-group overhead (query rotation,
// final reduction, partial write) stays small, and never more splits than units.
int attend_splits(std::size_t groups_without_split, int max_units, unsigned compute_units);

}  // namespace kvarn_cl::opencl
