// The geometry build options that every program of a record geometry shares (program_table.hpp
// says which programs take them), and the launch shapes of the codec kernels (rotate, quantize,
// dequantize) and the row kernels (copies, checks). The numbers come from kvarn_cl::RecordLayout, the one source of truth for record
// geometry, so the kernels and the CPU codec cannot disagree on them.
#pragma once

#include <cstddef>
#include <string>

#include "kvarn_cl/device.hpp"
#include "kvarn_cl/format.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {

// -D options: KV_D, KV_G, KV_KB, KV_VB, KV_RECORD_BYTES, KV_K_ROW_BYTES, KV_V_ROW_BYTES, the
// KV_OFF_* byte offsets of every record field and KV_ROT_SCALE (the CPU's 1/sqrt(D), exact bits).
// Throws Unsupported if the layout breaks an alignment the kernels rely on.
std::string geometry_options(const CodecParams& params);

// Launch descriptors of the codec and row kernels: their work-group sizes, computed here only and
// handed to the sources as -D defines by program_spec (program_table.cpp); the launches read the
// same functions. `caps` carries the device's limits (lowered by KVARN_CL_DEVICE_LIMITS where set).

// The largest power of two <= min(want, the device's max work-group size), at least 1.
std::size_t limited_work_group(std::size_t want, const DeviceCapabilities& caps);

// rotate.cl ROT_WG: 256 items (256/(D/8) rows per group), fewer where the device allows fewer.
std::size_t rotate_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
// quantize.cl Q_WG: (D/8) x (G / tokens_per_item) items (quantize.cl keeps a tokens_per_item x 8
// block of the tile per item); the backend picks tokens_per_item (8, 16 or 32) so that it fits
// the device (OpenCLBackend::codec_kernels).
std::size_t quantize_work_group(const CodecParams& params, int tokens_per_item);
std::size_t quantize_kernel_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
// dequantize.cl DQ_WG: 64 items (one 8-token x 8-channel block each), 32 on a device with less
// than 32 KiB of local memory (the original frame's row buffer scales with it).
std::size_t dequantize_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
// Work-items of the dequantize kernel per tile half: one per 8-token x 8-channel block
// (dequantize.cl DQ_BLOCKS, passed by dequantize_options).
std::size_t dequantize_items_per_tile(const CodecParams& params);
// quantize.cl Q_LOCAL_BUDGET: the local memory its joint reduction of both axes may take (28 KiB,
// the rest of SPEC §6's 32 KiB being headroom; 7/8 of a device with less): above it the kernel
// reduces one axis at a time in half the scratch.
std::size_t quantize_local_budget(const DeviceCapabilities& caps);
// quantize.cl Q_XP: passes of its token reduction (1; 2 where one pass's scratch, D/8 x (G+1)
// floats, does not fit the device: D 256 below 24 KiB).
int quantize_token_passes(const CodecParams& params, int tokens_per_item,
                          const DeviceCapabilities& caps);
// Bytes a driver may add to a kernel's static local memory beyond the __local variables of its
// source: NVIDIA's OpenCL (H100, driver 580.159) reports 4 to 16 bytes more in
// CL_KERNEL_LOCAL_MEM_SIZE than they declare. Every local-memory plan (quantize_local_bytes,
// attend_tile_slots_local_bytes, attend_short_local_bytes) counts them, so that a plan the host
// finds to fit a device also fits there.
inline constexpr std::size_t kDriverLocalBytes = 16;
// quantize.cl's local memory (bytes) with tokens_per_item on that device, and whether it fits
// (the backend takes the first of 8, 16, 32 tokens per item that fits, codec_kernels).
std::size_t quantize_local_bytes(const CodecParams& params, int tokens_per_item,
                                 const DeviceCapabilities& caps);
bool quantize_fits_device(const CodecParams& params, int tokens_per_item,
                          const DeviceCapabilities& caps);
// The codec program's derived constants: DQ_BLOCKS, Q_LOCAL_BUDGET and Q_XP.
std::string codec_options(const ProgramArgs& args, const DeviceCapabilities& caps);
// copy_rows.cl CR_WG: 256 16-byte words per group, fewer where the device allows fewer.
std::size_t copy_rows_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);
// check_rows.cl CK_WG: 64 items.
std::size_t check_rows_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);

}  // namespace kvarn_cl::opencl
