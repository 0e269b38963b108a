// Backend choice: parse_backend_kind, make_opencl_backend() and make_backend() with the automatic
// fallback to the CPU when no OpenCL device is usable (the reason goes to `why`).
#include <algorithm>
#include <cctype>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#endif

namespace kvarn_cl {

BackendKind parse_backend_kind(const std::string& name, const std::string& argument) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "cpu") return BackendKind::cpu;
  if (n == "opencl" || n == "cl") return BackendKind::opencl;
  if (n == "auto" || n == "automatic") return BackendKind::automatic;
  throw InvalidArgument(argument + ": unknown backend '" + name + "' (expected cpu, opencl or auto)");
}

std::unique_ptr<Backend> make_opencl_backend() {
#if KVARN_CL_WITH_OPENCL
  return make_opencl_backend(DeviceSelector{});
#else
  throw Unsupported("this build of libkvarn_cl has no OpenCL backend (KVARN_CL_WITH_OPENCL=OFF)");
#endif
}

std::unique_ptr<Backend> make_backend(BackendKind kind, std::string* why) {
  if (why) why->clear();
  switch (kind) {
    case BackendKind::cpu:
      return make_cpu_backend();
    case BackendKind::opencl:
      return make_opencl_backend();
    case BackendKind::automatic:
      break;
  }
  try {
    return make_opencl_backend();
  } catch (const Error& e) {
    // Any library error (no platform, no matching device, unusable device, a failing driver)
    // means "no OpenCL here": run on the CPU and say why.
    if (why) *why = std::string("OpenCL backend unavailable, using the CPU: ") + e.what();
    return make_cpu_backend();
  }
}

}  // namespace kvarn_cl
