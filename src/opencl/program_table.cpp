// The program table (program_table.hpp).
#include "opencl/program_table.hpp"

#include <algorithm>

#include "kvarn_cl/error.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/denormal_decode.hpp"
#include "opencl/subgroups.hpp"

namespace kvarn_cl::opencl {
namespace {

// Every attention program: the shared helpers, the subgroup reductions (used under KV_SUBGROUPS)
// and the merge kernel before the program's own file.
std::vector<std::string> attention_files(std::vector<std::string> own) {
  std::vector<std::string> files{"common.cl", "subgroups.cl", "attention_shared.cl",
                                 "attention_merge.cl"};
  files.insert(files.end(), own.begin(), own.end());
  return files;
}

std::vector<ProgramDef> make_table() {
  const KernelDef merge{"kvarn_attend_merge", "AT_MWG", merge_work_group};
  return {
      {Program::rotate,
       "rotation",
       {"common.cl", "fwht_rows.cl", "rotate.cl"},
       Geometry::head_dim,
       false,
       false,
       "",
       "",
       {{"kvarn_rotate_f16", "ROT_WG", rotate_work_group},
        {"kvarn_rotate_f32", "ROT_WG", rotate_work_group},
        {"kvarn_append_rows_f16", "ROT_WG", rotate_work_group},
        {"kvarn_append_rows_f32", "ROT_WG", rotate_work_group}},
       nullptr},
      {Program::codec,
       "codec",
       {"common.cl", "fwht_rows.cl", "quantize.cl", "dequantize.cl"},
       Geometry::record,
       false,
       true,
       "",
       "-DKV_UNROLL=1",
       {{"kvarn_quantize", "Q_WG", quantize_kernel_work_group},
        {"kvarn_dequantize_rotated", "DQ_WG", dequantize_work_group},
        {"kvarn_dequantize_original", "DQ_WG", dequantize_work_group}},
       codec_options},
      {Program::attend_tile_slots,
       "fused attention (tile slots)",
       attention_files({"attention.cl"}),
       Geometry::record,
       true,
       false,
       "",
       "-DAT_UNROLL=1",
       {{"kvarn_attend_records", "AT_WG", attend_tile_slots_work_group}, merge},
       attend_tile_slots_options},
      {Program::attend_short,
       "fused attention (short contexts)",
       attention_files({"attention_short.cl"}),
       Geometry::record,
       true,
       false,
       "",
       "",
       {{"kvarn_attend_records_short", "AT_WG", attend_short_work_group}, merge},
       attend_short_options},
      // attention_short.cl's unit code for fp16 rows only; AT_PREFETCH_FP16 makes it prefetch
      // fp16 V rows (its only kind of unit) instead of record code words.
      {Program::attend_fp16,
       "fp16 attention",
       attention_files({"attention_short.cl"}),
       Geometry::head_dim,
       true,
       false,
       "-DAT_PREFETCH_FP16=1",
       "",
       {{"kvarn_attend_fp16", "AT_WG", attend_fp16_work_group}, merge},
       attend_fp16_options},
      // AT_PTX_FENCE: the in-kernel merge's fence as PTX membar.gl (attention_merge.cl); the
      // capability probe builds the same instruction (mma_primitives.cl at_fence_gpu).
      {Program::attend_nvidia_mma_sync,
       "fused attention (nvidia_mma_sync)",
       attention_files({"mma_primitives.cl", "attention_mma.cl"}),
       Geometry::record,
       true,
       false,
       "-DAT_PTX_FENCE=1",
       "",
       {{"kvarn_attend_records_mma", "MW", warp_work_group}, merge},
       nullptr},
      {Program::attend_nvidia_mma_sync_emulated,
       "fused attention (nvidia_mma_sync, emulated)",
       attention_files({"mma_primitives.cl", "attention_mma.cl"}),
       Geometry::record,
       true,
       false,
       "-DAT_MMA_EMULATE=1",
       "",
       {{"kvarn_attend_records_mma", "MW", warp_work_group}, merge},
       nullptr},
      {Program::mma_probe,
       "nvidia_mma_sync probe",
       {"mma_primitives.cl", "mma_probe.cl"},
       Geometry::none,
       false,
       false,
       "",
       "",
       {{"kvarn_mma_probe", "MW", warp_work_group}},
       nullptr},
      {Program::mma_probe_emulated,
       "nvidia_mma_sync probe (emulated)",
       {"mma_primitives.cl", "mma_probe.cl"},
       Geometry::none,
       false,
       false,
       "-DAT_MMA_EMULATE=1",
       "",
       {{"kvarn_mma_probe", "MW", warp_work_group}},
       nullptr},
      {Program::subgroups_probe,
       "subgroups probe",
       {"subgroups.cl", "subgroups_probe.cl"},
       Geometry::none,
       false,
       false,
       "-DKV_SUBGROUPS=1",
       "",
       {{"kvarn_subgroups_probe", "SG_WG", subgroups_probe_work_group}},
       nullptr},
      {Program::denormal_probe,
       "denormal probe",
       {"denormal_probe.cl"},
       Geometry::none,
       false,
       false,
       "",
       "",
       {{"kvarn_denormal_probe", "DN_WG", denormal_probe_work_group},
        {"kvarn_denormal_rate", "DN_WG", denormal_probe_work_group}},
       nullptr},
      {Program::copy_rows,
       "row copies",
       {"copy_rows.cl"},
       Geometry::none,
       false,
       false,
       "",
       "",
       {{"kvarn_copy_rows", "CR_WG", copy_rows_work_group}},
       nullptr},
      {Program::check_rows,
       "row checks",
       {"check_rows.cl"},
       Geometry::none,
       false,
       false,
       "",
       "",
       {{"kvarn_check_rows", "CK_WG", check_rows_work_group}},
       nullptr},
  };
}

}  // namespace

const std::vector<ProgramDef>& program_table() {
  static const std::vector<ProgramDef> table = make_table();
  return table;
}

const ProgramDef& program_def(Program program) {
  for (const ProgramDef& d : program_table())
    if (d.program == program) return d;
  throw InvalidArgument("program " + std::to_string(int(program)) + " is not in the program table");
}

std::size_t kernel_work_group(Program program, std::size_t kernel, const ProgramArgs& args,
                              const DeviceCapabilities& caps) {
  const ProgramDef& d = program_def(program);
  if (kernel >= d.kernels.size())
    throw InvalidArgument("kernel_work_group: program " + std::string(d.name) + " has no kernel " +
                          std::to_string(kernel));
  return d.kernels[kernel].work_group(args, caps);
}

bool unrolls_loops(const DeviceCapabilities& caps) { return caps.type == "gpu"; }

ProgramSpec program_spec(Program program, const ProgramArgs& args, DeviceRuntime& runtime) {
  const DeviceCapabilities& caps = runtime.caps();
  const ProgramDef& d = program_def(program);
  std::string options;
  auto add = [&](const std::string& o) {
    if (!o.empty()) options += (options.empty() ? "" : " ") + o;
  };
  switch (d.geometry) {
    case Geometry::none:
      break;
    case Geometry::head_dim: {
      // Units of 128 rows: the k4v2_g128 geometry supplies KV_D and KV_G = 128; the record fields
      // are unused.
      validate_head_dim(args.params.head_dim, "program head_dim");
      add(geometry_options(
          CodecParams{Preset::k4v2_g128, args.params.head_dim, kDefaultSinkhornIters}));
      break;
    }
    case Geometry::record:
      add(geometry_options(args.params));
      break;
  }
  if (d.heads_per_group) add("-DAT_HPW=" + std::to_string(args.heads_per_group));
  if (d.tokens_per_item) add("-DQ_RT=" + std::to_string(args.tokens_per_item));
  // Each work-group constant once, even where two kernels share it (the rotate kernels).
  std::vector<std::string> defined;
  for (const KernelDef& k : d.kernels) {
    if (std::find(defined.begin(), defined.end(), k.work_group_define) != defined.end()) continue;
    defined.push_back(k.work_group_define);
    add("-D" + std::string(k.work_group_define) + "=" + std::to_string(k.work_group(args, caps)));
  }
  if (d.derived_options != nullptr) add(d.derived_options(args, caps));
  add(d.options);
  if (unrolls_loops(caps)) add(d.gpu_options);
  // The subgroups variant of the files holding subgroups.cl (the probe passes it itself; asking
  // the check from there would wait on the check's own call).
  const bool has_subgroups_file =
      std::find(d.files.begin(), d.files.end(), "subgroups.cl") != d.files.end();
  if (has_subgroups_file && program != Program::subgroups_probe && runtime.subgroups().available)
    add("-DKV_SUBGROUPS=1");
  if (program == Program::attend_tile_slots && runtime.denormal_decode().available)
    add("-DAT_DENORM=1");
  return {d.files, options};
}

const std::vector<std::string>& codec_files() {
  static const std::vector<std::string> files = [] {
    std::vector<std::string> out;
    for (Program p : {Program::rotate, Program::codec})
      for (const std::string& f : program_def(p).files)
        if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
    return out;
  }();
  return files;
}

}  // namespace kvarn_cl::opencl
