// The per-device kernel-variant listing (kernel_variants.hpp).
#include "opencl/kernel_variants.hpp"

#include "opencl/attention_program.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {
namespace {

std::string items(std::size_t n) { return std::to_string(n) + " items"; }

// Why a work-group is what it is: its design size, or the device's limit below it.
std::string limited(std::size_t got, std::size_t design) {
  return got < design ? " (the device allows " + items(got) + " per group; designed for " +
                            std::to_string(design) + ")"
                      : "";
}

}  // namespace

std::vector<std::string> describe_kernel_variants(OpenCLBackend& backend) {
  const DeviceCapabilities& caps = backend.caps();
  std::vector<std::string> out;
  const bool gpu = unrolls_loops(caps);
  out.push_back(
      std::string("builds: ") +
      (gpu ? "unrolled (KV_UNROLL, AT_UNROLL: device type gpu keeps private arrays in registers)"
           : "compact (device type " + caps.type + ": unrolling only slows its compiler)"));

  ProgramArgs d128;
  d128.params = CodecParams{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
  const std::size_t rot = kernel_work_group(Program::rotate, 0, d128, caps);
  out.push_back("rotation, decode-step append: rotate.cl, groups of " + items(rot) +
                limited(rot, 256));

  std::string q = "quantize: quantize.cl, tokens per item";
  for (int d : {64, 128, 256}) {
    const CodecParams g{Preset::k4v2_g128, d, kDefaultSinkhornIters};
    const int rt = backend.quantize_tokens_per_item(g);
    q += std::string(d == 64 ? " " : ", ") + std::to_string(rt) + " at D " + std::to_string(d) +
         " (groups of " + items(quantize_work_group(g, rt)) + ")";
  }
  out.push_back(q + "; 8 unless the device's work-group limit or local memory needs more");
  out.push_back("dequantize: dequantize.cl, groups of " +
                items(kernel_work_group(Program::codec, 1, d128, caps)));

  const CapabilityCheck& mma = backend.runtime().nvidia_mma_sync();
  std::string attend = "fused decode attention: ";
  const std::vector<AttendKernel> policy = attend_policy_kernels(mma.available);
  for (std::size_t i = 0; i < policy.size(); ++i) {
    const AttendDescriptor& d = attend_descriptor(policy[i]);
    ProgramArgs a = d128;
    a.heads_per_group = d.heads_per_group(1);
    attend += (i == 0 ? "" : " or ") + std::string(d.variant) + " [groups of " +
              items(kernel_work_group(d.program, d.split_kernel, a, caps)) + "]";
  }
  attend +=
      mma.available
          ? " (" + std::string(to_string(Capability::nvidia_mma_sync)) + ": " + mma.reason + ")"
          : " (chosen per launch by tiles per compute unit; nvidia_mma_sync not used: " +
                mma.reason + ")";
  out.push_back(attend);
  ProgramArgs gqa4 = d128;
  gqa4.heads_per_group = 4;
  const bool a_local = attend_tile_slots_accumulators_local_fit(gqa4, caps);
  out.push_back(std::string("tile-slot V accumulators (k4v2_g128, D 128): ") +
                (a_local ? "chosen per launch: local memory at 4 query heads per group where a "
                           "split runs " +
                               std::to_string(kTileSlotLocalAccumulatorsMinSteps) +
                               " steps or more (AT_ALOCAL: fewer registers per item, more "
                               "work-groups per compute unit), else registers"
                         : "registers (the device's local memory has no room for AT_ALOCAL)"));
  const std::size_t tile = attend_tile_slots_work_group(d128, caps);
  const std::size_t merge = merge_work_group(d128, caps);
  out.push_back("split merge: attention_merge.cl, groups of " + items(merge) + limited(merge, 256));
  ProgramArgs fp16 = d128;
  fp16.heads_per_group = attend_fp16_heads_per_group(4, 128);
  out.push_back("fp16 attention: attention_short.cl (AT_PREFETCH_FP16), groups of " +
                items(attend_fp16_work_group(fp16, caps)) + " at 4 query heads per KV head");
  const std::size_t copy = kernel_work_group(Program::copy_rows, 0, {}, caps);
  out.push_back("row copies: copy_rows.cl, groups of " + items(copy) + limited(copy, 256));
  out.push_back("row checks: check_rows.cl, groups of " +
                items(kernel_work_group(Program::check_rows, 0, {}, caps)));
  // What the device's local memory made of the plans (attention_program.hpp, codec_program.hpp):
  // from 32 KiB up they are the tuned ones; below, the groups and buffers shrink to fit.
  const CodecParams d256{Preset::k4v2_g128, 256, kDefaultSinkhornIters};
  const int q256 = backend.quantize_tokens_per_item(d256);
  const AttendShortPlan sp = attend_short_plan(d128.params, attend_heads_per_group(4), caps);
  out.push_back(
      "local memory: " + std::to_string(caps.local_mem_bytes / 1024) + " KiB" +
      (caps.local_mem_bytes >= 32 * 1024 ? " (the tuned plans)" : " (plans shrunk to fit)") +
      ": tile slots " + std::to_string(attend_tile_slots_local_bytes(d128.params, tile, a_local)) +
      " bytes at D 128 and 4 heads [groups of " + items(tile) + "], short-context " +
      std::to_string(attend_short_local_bytes(d128.params, attend_heads_per_group(4), sp)) +
      " bytes [groups of " + items(sp.work_group) + ", " + std::to_string(sp.reduction_floats) +
      "-float reduction], quantize " + std::to_string(quantize_local_bytes(d256, q256, caps)) +
      " bytes at D 256 (" + std::to_string(quantize_token_passes(d256, q256, caps)) +
      (quantize_token_passes(d256, q256, caps) == 1 ? " token pass)" : " token passes)"));
  // No kernel has an fp16-arithmetic variant (docs/PORTABILITY.md says why): say what the device
  // offers, so a reader knows what such a variant would find here.
  out.push_back(std::string("fp16 arithmetic: portable fp32 (") +
                (caps.fp16
                     ? "the device has cl_khr_fp16; not used: no fp16 arithmetic that could be "
                       "faster meets SPEC §5, docs/PORTABILITY.md"
                     : "the device has no cl_khr_fp16") +
                ")");
  const CapabilityCheck& sg = backend.runtime().subgroups();
  out.push_back(
      sg.available
          ? "reductions: subgroups (split merge and the short-context and fp16 attention's "
            "softmax maximum by subgroup operations; " +
                sg.reason + ")"
          : "reductions: local memory (subgroups not used: " + sg.reason + ")");
  const CapabilityCheck& dn = backend.runtime().denormal_decode();
  out.push_back(
      dn.available ? "code decode: denormal_decode in the tile-slot attention (one AND per code; " +
                         dn.reason + ")"
                   : "code decode: portable (shift and and-or per code; denormal_decode not "
                     "used: " +
                         dn.reason + ")");
  return out;
}

}  // namespace kvarn_cl::opencl
