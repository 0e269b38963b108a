// The programs `auto` builds before it accepts an OpenCL device (device_acceptance.hpp). The
// codec alone used to be built: a device whose attention kernels did not build was accepted and
// the first attend failed (issue 19). Only MHA at the default geometry: every attention program
// shares its sources, so a compiler that cannot build them fails here; other geometries are
// built when first used.
#include "opencl/device_acceptance.hpp"

#include "opencl/attention_program.hpp"
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

}  // namespace kvarn_cl::opencl
