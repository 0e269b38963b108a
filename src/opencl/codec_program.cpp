// Geometry build options from RecordLayout.
#include "opencl/codec_program.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <sstream>

#include "format/rotation_scale.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::opencl {

std::string geometry_options(const CodecParams& params) {
  const RecordLayout l = RecordLayout::make(params);
  // The kernels read codes and records with 16-byte loads and rows with 8-channel vectors.
  const bool aligned = l.bytes % 16 == 0 && l.k_codes % 16 == 0 && l.v_codes % 16 == 0 &&
                       l.k_row_bytes % 16 == 0 && l.v_row_bytes % 4 == 0 && l.head_dim % 64 == 0;
  if (!aligned)
    throw Unsupported("record layout of " + to_string(params.preset) + " with head_dim " +
                      std::to_string(params.head_dim) +
                      " breaks the alignment the OpenCL kernels need");
  char scale[64];
  std::snprintf(scale, sizeof scale, "%af", double(detail::rotation_scale(l.head_dim)));
  std::ostringstream o;
  o << "-DKV_D=" << l.head_dim << " -DKV_G=" << l.group << " -DKV_KB=" << l.k_bits
    << " -DKV_VB=" << l.v_bits << " -DKV_RECORD_BYTES=" << l.bytes << "UL"
    << " -DKV_K_ROW_BYTES=" << l.k_row_bytes << " -DKV_V_ROW_BYTES=" << l.v_row_bytes
    << " -DKV_OFF_K_CODES=" << l.k_codes << " -DKV_OFF_S_COL_K=" << l.s_col_k
    << " -DKV_OFF_ZP_K=" << l.zp_k << " -DKV_OFF_S_ROW_K=" << l.s_row_k
    << " -DKV_OFF_V_CODES=" << l.v_codes << " -DKV_OFF_S_COL_V=" << l.s_col_v
    << " -DKV_OFF_S_ROW_V=" << l.s_row_v << " -DKV_OFF_ZP_V=" << l.zp_v
    << " -DKV_ROT_SCALE=" << scale << " -DKV_MAX_ABS=" << kMaxRotatedMagnitude << ".0f";
  return o.str();
}

std::size_t limited_work_group(std::size_t want, const DeviceCapabilities& caps) {
  const std::size_t most =
      std::min<std::size_t>(want, std::max<std::uint64_t>(1, caps.max_work_group_size));
  std::size_t p = 1;
  while (p * 2 <= most) p *= 2;
  return p;
}

std::size_t rotate_work_group(const ProgramArgs& args, const DeviceCapabilities& caps) {
  // At least one whole row (D/8 items): rotate.cl's rows are transformed within the group.
  return std::max<std::size_t>(limited_work_group(256, caps),
                               std::size_t(args.params.head_dim / 8));
}

std::size_t quantize_work_group(const CodecParams& params, int tokens_per_item) {
  if (tokens_per_item <= 0 || params.group() % tokens_per_item != 0)
    throw InvalidArgument("quantize_work_group: tokens_per_item " +
                          std::to_string(tokens_per_item) + " does not divide the group " +
                          std::to_string(params.group()));
  return std::size_t(params.head_dim / 8) * std::size_t(params.group() / tokens_per_item);
}

std::size_t quantize_kernel_work_group(const ProgramArgs& args, const DeviceCapabilities&) {
  return quantize_work_group(args.params, args.tokens_per_item);
}

std::size_t dequantize_work_group(const ProgramArgs&, const DeviceCapabilities& caps) {
  // The original frame's row buffer is (items / (D/8)) x 8 rows of D + 8 floats: 17-18 KiB at 64
  // items, half at 32.
  return caps.local_mem_bytes != 0 && caps.local_mem_bytes < 32 * 1024 ? 32 : 64;
}

std::size_t dequantize_items_per_tile(const CodecParams& params) {
  return std::size_t(params.group() / 8) * std::size_t(params.head_dim / 8);
}

std::size_t quantize_local_budget(const DeviceCapabilities& caps) {
  const std::uint64_t device = caps.local_mem_bytes == 0 ? 32 * 1024 : caps.local_mem_bytes;
  return std::size_t(std::min<std::uint64_t>(28 * 1024, device / 8 * 7));
}

namespace {
// quantize.cl's local memory, in floats: the reduction scratch (both axes at once where that
// stays within Q_LOCAL_BUDGET and the token axis takes one pass, Q_JOINT; else the larger
// region), the per-token and per-channel vectors (l, e twice, best, std) and red4.
std::size_t quantize_local_floats(const CodecParams& params, int tokens_per_item, int passes,
                                  const DeviceCapabilities& caps) {
  const std::size_t D = std::size_t(params.head_dim), G = std::size_t(params.group());
  const std::size_t a = D / 8 / std::size_t(passes) * (G + 1);
  const std::size_t b = G / std::size_t(tokens_per_item) * (D + 1);
  const std::size_t vectors = 5 * (G + D), red = 4 * 16;
  const bool joint = passes == 1 && (a + b + 4 * (G + D) + red) * 4 <= quantize_local_budget(caps);
  return (joint ? a + b : std::max(a, b)) + vectors + red;
}
bool fits_device(std::size_t bytes, const DeviceCapabilities& caps) {
  return caps.local_mem_bytes == 0 || bytes <= caps.local_mem_bytes;
}
}  // namespace

int quantize_token_passes(const CodecParams& params, int tokens_per_item,
                          const DeviceCapabilities& caps) {
  // One pass wherever it fits (every geometry from 24 KiB up: the plan of devices with 32 KiB
  // and more is unchanged); else two (D 256 below 24 KiB).
  const std::size_t one_pass =
      quantize_local_floats(params, tokens_per_item, 1, caps) * 4 + kDriverLocalBytes;
  return fits_device(one_pass, caps) ? 1 : 2;
}

std::size_t quantize_local_bytes(const CodecParams& params, int tokens_per_item,
                                 const DeviceCapabilities& caps) {
  const int passes = quantize_token_passes(params, tokens_per_item, caps);
  return quantize_local_floats(params, tokens_per_item, passes, caps) * 4 + kDriverLocalBytes;
}

bool quantize_fits_device(const CodecParams& params, int tokens_per_item,
                          const DeviceCapabilities& caps) {
  return fits_device(quantize_local_bytes(params, tokens_per_item, caps), caps);
}

std::string codec_options(const ProgramArgs& args, const DeviceCapabilities& caps) {
  return "-DDQ_BLOCKS=" + std::to_string(dequantize_items_per_tile(args.params)) +
         " -DQ_LOCAL_BUDGET=" + std::to_string(quantize_local_budget(caps)) + " -DQ_XP=" +
         std::to_string(args.tokens_per_item > 0
                            ? quantize_token_passes(args.params, args.tokens_per_item, caps)
                            : 1);
}

std::size_t copy_rows_work_group(const ProgramArgs&, const DeviceCapabilities& caps) {
  return limited_work_group(256, caps);
}

std::size_t check_rows_work_group(const ProgramArgs&, const DeviceCapabilities& caps) {
  return limited_work_group(64, caps);
}

}  // namespace kvarn_cl::opencl
