// What make_backend(automatic) builds on an OpenCL device before it accepts it
// (src/factory/make_backend.cpp): a device whose kernels do not build is no device, and `auto`
// falls back to the CPU at once instead of failing the first append or attend.
#pragma once

#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

// Builds the default geometry's codec program and the fused attention kernels the launch policy
// can pick on this device for it (matrix units where the probe passed, else the two portable
// kernels). Throws what a failed build throws (KernelBuildError, DeviceError).
void build_acceptance_programs(OpenCLBackend& backend);

}  // namespace kvarn_cl::opencl
