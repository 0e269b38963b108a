// The capability check of the `subgroups` kernel variant (kernels/subgroups.cl; docs/PORTABILITY.md):
// work-group reductions by subgroup operations instead of local-memory trees, in the split merge
// (attention_merge.cl) and the short-context and fp16 attention's softmax maximum
// (attention_short.cl). program_spec (program_table.cpp) passes -DKV_SUBGROUPS=1 to every program
// holding subgroups.cl when this check passed on the device; every other device, and one where it
// fails, builds the portable reductions of the same files.
#pragma once

#include <cstddef>

#include "opencl/device_runtime.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {

// The probe's work-group: the short-context attention's 128 items, the floor of every profile.
std::size_t subgroups_probe_work_group(const ProgramArgs& args, const DeviceCapabilities& caps);

// Builds kernels/subgroups_probe.cl, runs it on one work-group and compares every result with the
// exact value. Never throws: a build failure, a launch error or a wrong result is {false, reason}.
CapabilityCheck run_subgroups_probe(DeviceRuntime& runtime);

// The policy: a device whose capability record has subgroups (cl_intel_subgroups or
// cl_khr_subgroups, not lowered by KVARN_CL_DEVICE_LIMITS=subgroups=0) and a passing probe.
CapabilityCheck detect_subgroups(DeviceRuntime& runtime);

}  // namespace kvarn_cl::opencl
