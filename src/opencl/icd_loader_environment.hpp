// Keeps the ICD loader's own environment intact across the process's first platform listing.
//
// On the NVIDIA host of ../shared/GPU.md, whose environment sets
// OCL_ICD_FILENAMES=libpocl.so.2:libnvidia-opencl.so.1, the variable reads "libpocl.so.2" once
// the process has listed the platforms (clGetPlatformIDs; measured 2026-12-07 with a bare ctypes
// caller, so the ICD loader or a driver it loads, not this library): the colon list is cut at
// its first entry in place, as a strtok over the string getenv() returned would cut it. The
// process keeps every driver it loaded, but every process it starts afterwards inherits the cut
// list and sees PoCL only: a test's child process, an inference engine's worker processes.
// (Debian 12's ocl-icd 2.3.1 leaves the variable alone.) The guard saves the variables before a
// listing and restores any that changed afterwards, so the library's discovery does not take
// drivers away from the caller's later processes. A listing the caller made before the
// library's first is beyond it.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kvarn_cl::opencl {

class IcdLoaderEnvironmentGuard {
 public:
  // The variables the loaders read as colon lists: OCL_ICD_FILENAMES (ocl-icd and the Khronos
  // loader) and OPENCL_LAYERS (the Khronos loader).
  IcdLoaderEnvironmentGuard();
  // Restores every saved variable whose value is no longer the saved one.
  ~IcdLoaderEnvironmentGuard();
  IcdLoaderEnvironmentGuard(const IcdLoaderEnvironmentGuard&) = delete;
  IcdLoaderEnvironmentGuard& operator=(const IcdLoaderEnvironmentGuard&) = delete;

 private:
  std::vector<std::pair<const char*, std::string>> saved_;  // set variables and their values
};

}  // namespace kvarn_cl::opencl
