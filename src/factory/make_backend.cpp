// Backend choice, above both backends (docs/ARCHITECTURE.md, the floors): parse_backend_kind,
// make_opencl_backend() and make_backend(options), the one rule that the C API, the CLI and Python
// call. The rule of `automatic` (docs/PERFORMANCE.md, "CPU: which backend auto picks"):
// - an OpenCL GPU or accelerator wins when present, once its kernels build (Backend::warm_up
//   builds the default programs here, so a broken kernel build falls back to the CPU now rather
//   than failing the first append or attend);
// - when the only OpenCL devices are CPUs (PoCL), the C++ backend runs the same work faster on
//   the same cores (its SIMD codec and attention against PoCL running our kernels, measured side
//   by side by benchmarks/cpu_backends_bench.cpp), so auto uses it;
// - a device named explicitly (BackendOptions::device, or KVARN_CL_PLATFORM / KVARN_CL_DEVICE)
//   is used even when it is a CPU (the user asked for it), with the same fallback when its
//   kernels do not build.
// `why` receives the reason for the choice in every automatic case.
#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "cpu/simd.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#endif

namespace kvarn_cl {

const char* to_string(BackendKind kind) noexcept {
  switch (kind) {
    case BackendKind::cpu:
      return "cpu";
    case BackendKind::opencl:
      return "opencl";
    case BackendKind::automatic:
      break;
  }
  return "auto";
}

BackendKind parse_backend_kind(const std::string& name, const std::string& argument) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (n == "cpu") return BackendKind::cpu;
  if (n == "opencl" || n == "cl") return BackendKind::opencl;
  if (n == "auto" || n == "automatic") return BackendKind::automatic;
  throw InvalidArgument(argument + ": unknown backend '" + name +
                        "' (expected cpu, opencl or auto)");
}

namespace {

std::unique_ptr<Backend> opencl_backend_on(const DeviceSelector& selector) {
#if KVARN_CL_WITH_OPENCL
  return make_opencl_backend(selector);
#else
  (void)selector;
  throw Unsupported("this build of libkvarn_cl has no OpenCL backend (KVARN_CL_WITH_OPENCL=OFF)");
#endif
}

bool selects_device(const DeviceSelector& s) { return !s.platform.empty() || !s.device.empty(); }

#if KVARN_CL_WITH_OPENCL  // (helpers of the OpenCL choice; unused, hence unwarned-of, without it)
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}
#endif

std::unique_ptr<Backend> automatic_backend(const BackendOptions& options, std::string* why,
                                           bool* fell_back) {
  auto reason = [&](const std::string& r) {
    if (why) *why = r;
  };
  auto fallback = [&](const std::string& r) {
    reason(r);
    if (fell_back) *fell_back = true;
    return make_cpu_backend(options.cpu_threads);
  };
#if KVARN_CL_WITH_OPENCL
  const bool selected = selects_device(options.device);
  const bool from_env = !selected && (env_set("KVARN_CL_PLATFORM") || env_set("KVARN_CL_DEVICE"));
  DeviceEntry device;  // the device of the environment or the default order, when not selected
  if (!selected) {
    try {
      device = default_opencl_device();
    } catch (const Error& e) {
      return fallback(std::string("OpenCL backend unavailable, using the CPU: ") + e.what());
    }
    if (device.caps.type == "cpu" && !from_env) {
      reason("the only OpenCL device is a CPU (" + device.caps.device_name + ", " +
             device.caps.platform_name + "): the C++ backend (" + cpu::simd::target_name() +
             ") is faster than OpenCL on the same cores (docs/PERFORMANCE.md); set "
             "KVARN_CL_DEVICE to use it anyway");
      return make_cpu_backend(options.cpu_threads);
    }
  }
  std::unique_ptr<Backend> backend;
  try {
    backend = make_opencl_backend(options.device);
  } catch (const Error& e) {
    return fallback(std::string("OpenCL backend unavailable, using the CPU: ") + e.what());
  }
  try {
    backend->warm_up();  // a device whose kernels do not build is no device
  } catch (const Error& e) {
    const std::string on = selected ? backend->name() : device.caps.device_name;
    return fallback("OpenCL backend unusable on " + on +
                    ", using the CPU: " + first_line(e.what()));
  }
  if (selected)
    reason("the selected OpenCL device");
  else if (from_env)
    reason("the OpenCL device chosen by KVARN_CL_PLATFORM / KVARN_CL_DEVICE");
  else
    reason("an OpenCL " + device.caps.type + " is present (" + device.caps.device_name +
           ") and its kernels build");
  return backend;
#else
  return fallback("this build has no OpenCL backend");
#endif
}

}  // namespace

std::unique_ptr<Backend> make_opencl_backend() { return opencl_backend_on(DeviceSelector{}); }

std::unique_ptr<Backend> make_backend(const BackendOptions& options, std::string* why,
                                      bool* fell_back) {
  if (why) why->clear();
  if (fell_back) *fell_back = false;
  if (options.kind == BackendKind::cpu && selects_device(options.device))
    throw InvalidArgument("make_backend: platform/device select an OpenCL device (platform '" +
                          options.device.platform + "', device '" + options.device.device +
                          "'); kind 'cpu' takes neither");
  if (options.kind == BackendKind::opencl && options.cpu_threads.count != 0)
    throw InvalidArgument("make_backend: cpu_threads " + std::to_string(options.cpu_threads.count) +
                          " applies to the CPU backend, not to kind 'opencl'");
  switch (options.kind) {
    case BackendKind::cpu:
      return make_cpu_backend(options.cpu_threads);
    case BackendKind::opencl:
      return opencl_backend_on(options.device);
    case BackendKind::automatic:
      break;
  }
  return automatic_backend(options, why, fell_back);
}

}  // namespace kvarn_cl
