// Backend choice: parse_backend_kind, make_opencl_backend() and make_backend() with the rule of
// `automatic` (docs/PERFORMANCE.md, "CPU: which backend auto picks"):
// - an OpenCL GPU or accelerator wins when present, once its kernels build (the default codec
//   program and the default attention kernels are built here, so a broken kernel build falls
//   back to the CPU now rather than failing the first append or attend);
// - when the only OpenCL devices are CPUs (PoCL), the C++ backend runs the same work faster on
//   the same cores (its SIMD codec and attention against PoCL running our kernels, measured side
//   by side by benchmarks/cpu_backends_bench.cpp), so auto uses it;
// - a device named explicitly by KVARN_CL_PLATFORM / KVARN_CL_DEVICE is used even when it is a
//   CPU (the user asked for it), with the same fallback when its kernels do not build.
// `why` receives the reason for the choice in every automatic case.
#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "cpu/simd.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#include "opencl/device_acceptance.hpp"
#include "opencl/opencl_backend.hpp"
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

namespace {

#if KVARN_CL_WITH_OPENCL  // (helpers of the OpenCL choice; unused, hence unwarned-of, without it)
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}
#endif

std::unique_ptr<Backend> automatic_backend(std::string* why, bool* fell_back) {
  auto reason = [&](const std::string& r) {
    if (why) *why = r;
  };
  auto fallback = [&](const std::string& r) {
    reason(r);
    if (fell_back) *fell_back = true;
    return make_cpu_backend();
  };
#if KVARN_CL_WITH_OPENCL
  const bool explicit_device = env_set("KVARN_CL_PLATFORM") || env_set("KVARN_CL_DEVICE");
  DeviceEntry device;
  try {
    device = default_opencl_device();
  } catch (const Error& e) {
    return fallback(std::string("OpenCL backend unavailable, using the CPU: ") + e.what());
  }
  if (device.caps.type == "cpu" && !explicit_device) {
    reason("the only OpenCL device is a CPU (" + device.caps.device_name + ", " +
           device.caps.platform_name + "): the C++ backend (" + cpu::simd::target_name() +
           ") is faster than OpenCL on the same cores (docs/PERFORMANCE.md); set "
           "KVARN_CL_DEVICE to use it anyway");
    return make_cpu_backend();
  }
  std::unique_ptr<Backend> backend;
  try {
    backend = make_opencl_backend();
    // Build the default programs now: a device whose kernels do not build is no device.
    opencl::build_acceptance_programs(static_cast<opencl::OpenCLBackend&>(*backend));
  } catch (const Error& e) {
    return fallback(std::string("OpenCL backend unusable on ") + device.caps.device_name +
                    ", using the CPU: " + first_line(e.what()));
  }
  reason(explicit_device ? "the OpenCL device chosen by KVARN_CL_PLATFORM / KVARN_CL_DEVICE"
                         : "an OpenCL " + device.caps.type + " is present (" +
                               device.caps.device_name + ") and its kernels build");
  return backend;
#else
  return fallback("this build has no OpenCL backend");
#endif
}

}  // namespace

std::unique_ptr<Backend> make_backend(BackendKind kind, std::string* why, bool* fell_back) {
  if (why) why->clear();
  if (fell_back) *fell_back = false;
  switch (kind) {
    case BackendKind::cpu:
      return make_cpu_backend();
    case BackendKind::opencl:
      return make_opencl_backend();
    case BackendKind::automatic:
      break;
  }
  return automatic_backend(why, fell_back);
}

}  // namespace kvarn_cl
