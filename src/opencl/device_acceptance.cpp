// The programs `auto` builds before it accepts an OpenCL device (device_acceptance.hpp). The
// codec alone used to be built: a device whose attention kernels did not build was accepted and
// the first attend failed (issue 19). Only MHA at the default geometry: every attention program
// shares its sources, so a compiler that cannot build them fails here; other geometries are
// built when first used.
#include "opencl/device_acceptance.hpp"

#include "opencl/attention_program.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {

void build_acceptance_programs(OpenCLBackend& backend) {
  const CodecParams defaults{};
  backend.quantize_tokens_per_item(defaults);  // builds the codec program
  for (AttendKernel kernel : attend_policy_kernels(backend.runtime().nvidia_mma_sync().available)) {
    ProgramArgs args;
    args.params = defaults;
    const AttendDescriptor& d = attend_descriptor(kernel);
    args.heads_per_group = d.heads_per_group(1);
    backend.runtime().program(program_spec(d.program, args, backend.runtime()));
  }
}

namespace {

// Whether every plan of the portable programs at `params` fits a device of `caps`.
bool plans_fit(const CodecParams& params, const DeviceCapabilities& caps) {
  const std::uint64_t local = caps.local_mem_bytes;
  bool quantize = false;
  for (int rt : {8, 16, 32})
    if (params.group() % rt == 0) quantize = quantize || quantize_fits_device(params, rt, caps);
  if (!quantize) return false;
  // attention.cl where it fits (attend_tile_slots_fit); else the policy takes the short kernel.
  for (int h = 1; h <= 8; ++h) {
    if (h <= 4 && attend_short_local_bytes(params, h, attend_short_plan(params, h, caps)) > local)
      return false;
    const CodecParams fp16{Preset::k4v2_g128, params.head_dim, kDefaultSinkhornIters};
    if (h * params.head_dim <= 1024 &&
        attend_short_local_bytes(fp16, h, attend_short_plan(fp16, h, caps)) > local)
      return false;
  }
  return true;
}

}  // namespace

std::uint64_t local_memory_floor() {
  static const std::uint64_t floor = [] {
    DeviceCapabilities caps;
    caps.max_work_group_size = 1024;
    for (std::uint64_t bytes = 1024; bytes < 32 * 1024; bytes += 256) {
      caps.local_mem_bytes = bytes;
      bool all = true;
      for (Preset p : all_presets())
        for (int d : {64, 128, 256})
          all = all && plans_fit(CodecParams{p, d, kDefaultSinkhornIters}, caps);
      if (all) return bytes;
    }
    return std::uint64_t(32 * 1024);
  }();
  return floor;
}

}  // namespace kvarn_cl::opencl
