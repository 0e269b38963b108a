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

// Every device of every platform; empty when the ICD loader finds no platform.
std::vector<FoundDevice> find_devices();

// Reads the capability record of one device (a handful of clGetDeviceInfo calls).
DeviceCapabilities read_capabilities(const cl::Platform& platform, const cl::Device& device);

// Picks a device: explicit selector fields win over the environment variables; an empty choice
// falls back to the default order. Throws Unsupported naming the reason and listing the devices.
FoundDevice select_device(const DeviceSelector& selector);

}  // namespace kvarn_cl::opencl
