// The capability check of Capability::nvidia_mma_sync, the matrix-unit fast path (SPEC §7; its
// kernel's descriptor: attention_program.cpp): NVIDIA devices whose OpenCL C compiler accepts
// inline PTX mma.sync run kernels/attention_mma.cl; every other device, and any NVIDIA device
// where the check fails, runs the portable kernels. Not "matrix units" in general: Intel's DPAS or
// AMD's WMMA would be variants of their own, with checks of their own.
#pragma once

#include "opencl/device_runtime.hpp"

namespace kvarn_cl::opencl {

// Builds kernels/mma_probe.cl (the primitives of mma_primitives.cl as inline PTX, or emulated
// when `emulate`), runs it on one warp and compares every result with the exact value. Never
// throws: a build failure, a launch error or a wrong result is {false, reason}.
CapabilityCheck run_mma_probe(DeviceRuntime& runtime, bool emulate = false);

// The policy: KVARN_CL_MMA=0 (or "off") turns the fast path off; otherwise vendor NVIDIA and a
// passing run_mma_probe.
CapabilityCheck detect_nvidia_mma_sync(DeviceRuntime& runtime);

}  // namespace kvarn_cl::opencl
