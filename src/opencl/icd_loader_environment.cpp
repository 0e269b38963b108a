// IcdLoaderEnvironmentGuard: see icd_loader_environment.hpp for why.
#include "opencl/icd_loader_environment.hpp"

#include <cstdlib>

namespace kvarn_cl::opencl {

IcdLoaderEnvironmentGuard::IcdLoaderEnvironmentGuard() {
  for (const char* name : {"OCL_ICD_FILENAMES", "OPENCL_LAYERS"})
    if (const char* value = std::getenv(name)) saved_.emplace_back(name, value);
}

IcdLoaderEnvironmentGuard::~IcdLoaderEnvironmentGuard() {
  for (const auto& [name, value] : saved_) {
    const char* now = std::getenv(name);
    // setenv copies the value into a new string; the cut one is left to the loader that cut it.
    if (now == nullptr || value != now) setenv(name, value.c_str(), 1);
  }
}

}  // namespace kvarn_cl::opencl
