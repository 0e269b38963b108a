// One OpenCL device in one context, shared by every backend on it in this process: the context,
// the capability record (read once) and the cache of built programs.
//
// Programs are built once per (device, driver version, source hash, build options, library
// version) in a process, and kept across processes in the on-disk binary cache for drivers that
// keep none themselves (program_binary_cache.hpp): the runtime is per device and context, and the cache key holds the rest. Runtimes for
// devices chosen by the library are shared through a registry of weak references, so a second
// make_opencl_backend() on the same device reuses its programs, while no cl:: object outlives the
// last backend (no global cl:: objects).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"
#include "opencl/cl_headers.hpp"
#include "opencl/device_discovery.hpp"
#include "opencl/program_binary_cache.hpp"

namespace kvarn_cl::opencl {

// What to compile: kernel files (concatenated in order, common.cl first) and -D options.
struct ProgramSpec {
  std::vector<std::string> files;
  std::string options;
};

// The result of a capability check of a kernel variant (attention_program.hpp, Capability): whether
// the device has it, and why or why not. nvidia_mma_sync: the probe of nvidia_mma_sync.cpp;
// subgroups: the probe of subgroups.cpp; denormal_decode: the probe of denormal_decode.cpp.
struct CapabilityCheck {
  bool available = false;
  std::string reason;  // "mma.sync probe passed" or why not
};

// The verdict of a capability probe whose program did not build: `what` ("the inline-PTX probe
// does not build") and the first line of the compiler's log.
CapabilityCheck probe_did_not_build(const std::string& what, const std::string& build_log);

class DeviceRuntime {
 public:
  // The shared runtime of a device found by discovery (creates its context on first use).
  static std::shared_ptr<DeviceRuntime> for_device(const FoundDevice& found);
  // The shared runtime of a caller's context and device (both retained).
  static std::shared_ptr<DeviceRuntime> for_context(const cl::Context& context,
                                                    const cl::Device& device);

  DeviceRuntime(cl::Context context, cl::Device device, DeviceCapabilities caps);

  const cl::Context& context() const noexcept { return context_; }
  const cl::Device& device() const noexcept { return device_; }
  const DeviceCapabilities& caps() const noexcept { return caps_; }

  // The built program (cached). Throws KernelBuildError with the build log when the compiler
  // rejects it, DeviceError for other failures. "-cl-std=CL1.2" is always added.
  cl::Program program(const ProgramSpec& spec);

  // Probed once per device, on first use (nvidia_mma_sync.cpp); never throws.
  const CapabilityCheck& nvidia_mma_sync();
  // The `subgroups` variant's check, once per device on first use (subgroups.cpp); never throws.
  const CapabilityCheck& subgroups();
  // The `denormal_decode` variant's check, once per device on first use (denormal_decode.cpp).
  const CapabilityCheck& denormal_decode();

  // Where this runtime's programs came from (the on-disk cache of program_binary_cache.hpp or a
  // build from source), and whether that cache is on for this device and where.
  struct ProgramCacheStats {
    // disk_rejected: entries found but refused after loading (the driver refused the binary, or
    // it carried another build's stamp); each is also a miss.
    int source_builds = 0, disk_hits = 0, disk_misses = 0, disk_stores = 0, disk_rejected = 0;
  };
  ProgramCacheStats program_cache_stats();
  std::string disk_cache_state();

 private:
  cl::Context context_;
  cl::Device device_;
  DeviceCapabilities caps_;
  std::mutex mutex_;
  std::map<std::string, cl::Program> programs_;
  bool disk_cache_checked_ = false;
  std::optional<ProgramBinaryCache> disk_cache_;
  std::string disk_cache_state_;
  ProgramCacheStats cache_stats_;
  std::once_flag nvidia_mma_sync_once_;
  CapabilityCheck nvidia_mma_sync_;
  std::once_flag subgroups_once_;
  CapabilityCheck subgroups_;
  std::once_flag denormal_decode_once_;
  CapabilityCheck denormal_decode_;
};

}  // namespace kvarn_cl::opencl
