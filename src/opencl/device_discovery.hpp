// Platform and device discovery, capability records and device selection
// (KVARN_CL_PLATFORM / KVARN_CL_DEVICE, or the default order GPU, accelerator, CPU).
#pragma once

#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"
#include "opencl/cl_headers.hpp"

namespace kvarn_cl::opencl {

struct FoundDevice {
  cl::Platform platform;
  cl::Device device;
  DeviceEntry entry;
};

// Every device of every platform; empty when the ICD loader finds no platform. A platform that
// lists no device (CL_DEVICE_NOT_FOUND: a driver that is installed but cannot reach its hardware)
// is left out; `without_devices`, where given, receives one line about each such platform, so
// that an error can say the platform was there.
std::vector<FoundDevice> find_devices(std::vector<std::string>* without_devices = nullptr);

// Reads the capability record of one device (a handful of clGetDeviceInfo calls), lowered by
// KVARN_CL_DEVICE_LIMITS where that is set (apply_device_limits).
DeviceCapabilities read_capabilities(const cl::Platform& platform, const cl::Device& device);

// The limit-profile test mode (docs/PORTABILITY.md): `profile` is a comma-separated list of
// work_group=N, local_mem=BYTES (or NK for N KiB), fp16=0, fp64=0, subgroups=0, denormals=0. Each entry can
// only lower what the device reports (a larger number or =1 leaves it as it is), so the runtime
// plans programs and launches as it would on a smaller device (Apple M-series, Mali, Adreno:
// work-groups of 256, 32 KiB of local memory, no subgroups, no fp16 or fp64). Empty: unchanged.
// Throws InvalidArgument naming KVARN_CL_DEVICE_LIMITS and the entry for anything else.
void apply_device_limits(DeviceCapabilities& caps, const std::string& profile);

// Picks a device: explicit selector fields win over the environment variables; an empty choice
// falls back to the default order. Throws Unsupported naming the reason and listing the devices.
FoundDevice select_device(const DeviceSelector& selector);

}  // namespace kvarn_cl::opencl
