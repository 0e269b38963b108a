// The capability check of the `denormal_decode` kernel variant (kernels/attention.cl under
// AT_DENORM; docs/PORTABILITY.md): the tile-slot attention decodes a code with one AND, as the
// denormal float it is in place, instead of a shift and an and-or into the top mantissa bits of
// 1.0f. That needs fp32 arithmetic that keeps denormal operands (CL_FP_DENORM, and a compiler
// that does not flush them), and it only pays where denormal operands cost nothing: GPUs that
// run them at full rate (the rate check below measures it). CPUs (PoCL, Intel's CPU runtime) take
// a microcode assist per denormal operand (the tile-slot kernel 8x slower on Intel's runtime), so
// the policy leaves them the portable decode unless KVARN_CL_DENORMAL_DECODE=1 asks for it (tests).
// program_spec (program_table.cpp) passes -DAT_DENORM=1 to the tile-slot attention program
// where this check passed on the device.
#pragma once

#include <cstddef>

#include "opencl/device_runtime.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {

// The probe's work-group: one of 64 items (every profile's floor is above it).
std::size_t denormal_probe_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);

// Builds kernels/denormal_probe.cl, runs it on one work-group and compares every result with the
// exact value. Never throws: a build failure, a launch error or a wrong result is {false, reason}.
CapabilityCheck run_denormal_probe(DeviceRuntime& runtime);

// Kernel time of the rate check (kvarn_denormal_rate): the same multiply-add chains on a denormal
// and on a normal operand, fastest of three launches each, `groups_per_unit` work-groups per
// compute unit running `iters` rounds of 8 multiply-adds per item (the policy's defaults keep a
// large GPU busy for tens of microseconds; tests pass less). Throws DeviceError.
struct DenormalRate {
  double denormal_us = 0, normal_us = 0;
};
DenormalRate measure_denormal_rate(DeviceRuntime& runtime, int iters = 4096,
                                   int groups_per_unit = 8);

// The policy: KVARN_CL_DENORMAL_DECODE=0 (or "off") turns it off and =1 (or "on") asks for it on
// any device that passes the probe; otherwise a GPU that passes the probe and whose multiply-adds
// on denormal operands run at the normal rate (within 15 %, measured once). Either way the device
// must report CL_FP_DENORM (not lowered by KVARN_CL_DEVICE_LIMITS=denormals=0).
CapabilityCheck detect_denormal_decode(DeviceRuntime& runtime);

}  // namespace kvarn_cl::opencl
