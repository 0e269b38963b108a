// What make_backend(automatic) builds on an OpenCL device before it accepts it
// (src/factory/make_backend.cpp): a device whose kernels do not build is no device, and `auto`
// falls back to the CPU at once instead of failing the first append or attend.
#pragma once

#include <cstdint>

#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

// Builds the default geometry's codec program and the fused attention kernels the launch policy
// can pick on this device for it (matrix units where the probe passed, else the two portable
// kernels). Throws what a failed build throws (KernelBuildError, DeviceError).
void build_acceptance_programs(OpenCLBackend& backend);

// The least local memory (bytes) a device needs: the smallest size at which the launch
// descriptors' plans of every portable program (codec, tile-slot, short-context and fp16
// attention; every preset, head_dim 64, 128 and 256, every heads-per-group) fit. The plans shrink
// below 32 KiB (attention_program.hpp, codec_program.hpp); the matrix-unit kernel runs only on
// NVIDIA and is not counted.
std::uint64_t local_memory_floor();

}  // namespace kvarn_cl::opencl
