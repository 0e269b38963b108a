// OpenCL devices as the library sees them: discovery with capabilities (for `kvarn-cl info`),
// a kernel build check, and the integration points for an inference engine that already owns an
// OpenCL context (build the backend on its context and queue, wrap its cl_mem as a Buffer, so
// the cache never travels through the host).
//
// The OpenCL handle types are declared here by their C names (cl_context is `_cl_context*`), so
// this header does not pull in CL/cl.h; pass the engine's cl_context/cl_device_id/... directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvarn_cl/backend.hpp"

struct _cl_context;
struct _cl_device_id;
struct _cl_command_queue;
struct _cl_mem;

namespace kvarn_cl {

// Read once per device. Sizes in bytes.
struct DeviceCapabilities {
  std::string platform_name;
  std::string platform_version;
  std::string device_name;
  std::string device_vendor;
  std::string device_version;    // "OpenCL 3.0 CUDA"
  std::string driver_version;    // "580.82" / "3.1+debian"
  std::string opencl_c_version;  // "OpenCL C 1.2 ..."
  std::string type;              // "gpu", "accelerator", "cpu", "other"
  int opencl_c_major = 0;
  int opencl_c_minor = 0;
  bool fp16 = false;  // cl_khr_fp16 (optional fast paths only; never required)
  bool fp64 = false;  // cl_khr_fp64
  bool subgroups =
      false;  // cl_khr_subgroups / cl_intel_subgroups or CL_DEVICE_MAX_NUM_SUB_GROUPS > 0
  bool correctly_rounded_div_sqrt = false;  // CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT
  bool denormals = false;                   // CL_FP_DENORM: fp32 keeps denormal numbers
  std::uint64_t local_mem_bytes = 0;
  std::uint64_t max_work_group_size = 0;
  unsigned compute_units = 0;
  std::uint64_t global_mem_bytes = 0;
  std::uint64_t max_alloc_bytes = 0;
  unsigned max_clock_mhz = 0;
};

struct DeviceEntry {
  int platform_index = 0;
  int device_index = 0;  // index within its platform
  DeviceCapabilities caps;
};

// Every device of every platform. Empty (not an error) when no OpenCL platform is installed.
// Throws DeviceError if the ICD loader itself fails in an unexpected way.
std::vector<DeviceEntry> list_opencl_devices();

// The device that make_opencl_backend() would pick (KVARN_CL_PLATFORM / KVARN_CL_DEVICE, else
// the first GPU, accelerator, CPU). Throws Unsupported naming the reason when there is none.
DeviceEntry default_opencl_device();

// Compiles the library's programs for the given device as the backend builds them there: the
// rotation at head_dim 64, 128 and 256, the codec programs of every preset at head_dim 128 and of
// the default preset at 64 and 256, the fused attention programs the device's launch policy can
// pick and the fp16 attention (GQA 4:1 and MHA at the default geometry), the row copies and
// checks. ok = false carries the failing build's log.
struct KernelBuildReport {
  bool ok = false;
  std::string message;    // what was built, or which build failed and why
  std::string build_log;  // compiler output of the failed build (empty when ok)
  double seconds = 0;     // wall time of the builds
  // Which fused decode kernel attend() runs on this device and why: "nvidia_mma_sync (...)" (the
  // NVIDIA inline-PTX kernel, its probe passed) or "portable (...)" with the probe's reason.
  std::string attention_variant;
  // Per kernel family, the variant the backend runs on this device and why ("family: variant
  // (why)"), from the launch descriptors; empty when the backend could not be made.
  std::vector<std::string> kernel_variants;
  std::string program_cache;  // the on-disk program binary cache: "off (...)" or "on, in DIR"
};
KernelBuildReport try_build_kernels(int platform_index, int device_index);

// The OpenCL backend on the selected device (DeviceSelector: backend.hpp).
std::unique_ptr<Backend> make_opencl_backend(const DeviceSelector& selector);

// The OpenCL backend on a caller's context, device and in-order queue (retained, not copied).
// Kernels are built for that device; buffers of that context can be wrapped with wrap_opencl_buffer.
std::unique_ptr<Backend> make_opencl_backend(_cl_context* context, _cl_device_id* device,
                                             _cl_command_queue* queue);

// A caller's cl_mem as a Buffer for an OpenCL backend on the same context (the object is
// retained; its size is read from the object).
std::unique_ptr<Buffer> wrap_opencl_buffer(_cl_mem* mem);
// The cl_mem behind a Buffer of an OpenCL backend, nullptr for other buffers (not retained).
_cl_mem* opencl_mem(const Buffer& buffer) noexcept;

}  // namespace kvarn_cl
