// Shared per-device state and the in-process program cache.
#include "opencl/device_runtime.hpp"

#include <cstdio>

#include <utility>

#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/kernel_sources.hpp"
#include "opencl/program_binary_cache.hpp"
#include "opencl/stderr_capture.hpp"

namespace kvarn_cl::opencl {
namespace {

// Weak references only: the registry never keeps a cl:: object alive by itself.
struct Registry {
  std::mutex mutex;
  std::map<std::pair<cl_context, cl_device_id>, std::weak_ptr<DeviceRuntime>> by_context;
  std::map<cl_device_id, std::weak_ptr<DeviceRuntime>> by_device;
};

Registry& registry() {
  static Registry* r = new Registry();  // leaked on purpose: usable during static destruction
  return *r;
}

// Whether `name` is one of the ';'-separated kernel names of CL_PROGRAM_KERNEL_NAMES.
bool has_kernel(const std::string& names, const std::string& name) {
  std::size_t from = 0;
  while (from <= names.size()) {
    std::size_t end = names.find(';', from);
    if (end == std::string::npos) end = names.size();
    std::string one = names.substr(from, end - from);
    while (!one.empty() && (one.back() == '\0' || one.back() == ' ')) one.pop_back();
    if (one == name) return true;
    from = end + 1;
  }
  return false;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

DeviceRuntime::DeviceRuntime(cl::Context context, cl::Device device, DeviceCapabilities caps)
    : context_(std::move(context)), device_(std::move(device)), caps_(std::move(caps)) {}

std::shared_ptr<DeviceRuntime> DeviceRuntime::for_device(const FoundDevice& found) {
  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mutex);
  auto& slot = reg.by_device[found.device()];
  if (auto rt = slot.lock()) return rt;
  cl::Context context = cl_call("creating an OpenCL context on " + found.entry.caps.device_name,
                                [&] { return cl::Context(found.device); });
  auto rt = std::make_shared<DeviceRuntime>(std::move(context), found.device, found.entry.caps);
  slot = rt;
  return rt;
}

std::shared_ptr<DeviceRuntime> DeviceRuntime::for_context(const cl::Context& context,
                                                          const cl::Device& device) {
  Registry& reg = registry();
  std::lock_guard<std::mutex> lock(reg.mutex);
  auto& slot = reg.by_context[{context(), device()}];
  if (auto rt = slot.lock()) return rt;
  const cl::Platform platform = cl_call("reading the platform of an OpenCL device", [&] {
    // The C call, because the C++ bindings changed the type getInfo<CL_DEVICE_PLATFORM> returns
    // (cl_platform_id in older opencl.hpp, cl::Platform in newer ones).
    cl_platform_id id = nullptr;
    const cl_int err = clGetDeviceInfo(device(), CL_DEVICE_PLATFORM, sizeof(id), &id, nullptr);
    if (err != CL_SUCCESS) throw cl::Error(err, "clGetDeviceInfo(CL_DEVICE_PLATFORM)");
    return cl::Platform(id, true);
  });
  auto rt = std::make_shared<DeviceRuntime>(context, device, read_capabilities(platform, device));
  slot = rt;
  return rt;
}

cl::Program DeviceRuntime::program(const ProgramSpec& spec) {
  std::string source = program_source(spec.files);
  const std::string options = "-cl-std=CL1.2 " + spec.options;
  const std::string key = build_key(caps_, source, options);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = programs_.find(key);
  if (it != programs_.end()) return it->second;

  const std::string what = "building OpenCL program [" + join(spec.files) + "] (kernels from " +
                           kernel_source_origin() + ") for " + caps_.device_name +
                           " with options '" + options + "'";
  if (!disk_cache_checked_) {
    disk_cache_ = ProgramBinaryCache::for_device(caps_, &disk_cache_state_);
    disk_cache_checked_ = true;
  }
  if (disk_cache_) {
    // The program carries the stamp of its build as an empty kernel, so that a binary loaded from
    // disk can be checked to be this build's and no other (program_binary_cache.hpp).
    const std::string stamp = stamp_kernel_name(build_stamp(key));
    source += "\n__kernel void " + stamp + "(void) {}\n";
    // A binary from the on-disk cache: one that does not load, does not build or carries another
    // stamp is a miss, rebuilt from source below and rewritten.
    if (auto binary = disk_cache_->load(key)) {
      try {
        cl::Program program(context_, std::vector<cl::Device>{device_},
                            cl::Program::Binaries{*binary});
        program.build(std::vector<cl::Device>{device_}, options.c_str());
        const std::string names = program.getInfo<CL_PROGRAM_KERNEL_NAMES>();
        if (has_kernel(names, stamp)) {
          ++cache_stats_.disk_hits;
          programs_.emplace(key, program);
          return program;
        }
        ++cache_stats_.disk_rejected;
      } catch (const cl::Error&) {
        ++cache_stats_.disk_rejected;
      }
    }
    ++cache_stats_.disk_misses;
  }
  cl::Program program = cl_call(what, [&] { return cl::Program(context_, source); });
  // The compiler's own stderr output joins the build log (stderr_capture.hpp).
  auto with_stderr = [](std::string log, const std::string& printed) {
    if (!printed.empty())
      log +=
          (log.empty() ? "" : "\n") + std::string("--- compiler output on stderr ---\n") + printed;
    return log;
  };
  StderrCapture capture;
  try {
    program.build(std::vector<cl::Device>{device_}, options.c_str());
  } catch (const cl::BuildError& e) {
    std::string log;
    for (const auto& entry : e.getBuildLog()) log += entry.second;
    if (log.empty()) log = "(the compiler returned no log)";
    throw KernelBuildError(what + " failed: " + cl_error_name(e.err()),
                           with_stderr(log, capture.finish()));
  } catch (const cl::Error& e) {
    // Some drivers report a failed compile without the bindings' BuildError; fetch the log here.
    std::string log;
    try {
      log = program.getBuildInfo<CL_PROGRAM_BUILD_LOG>(device_);
    } catch (const cl::Error&) {}
    const std::string printed = capture.finish();
    if (e.err() == CL_BUILD_PROGRAM_FAILURE || e.err() == CL_INVALID_BUILD_OPTIONS)
      throw KernelBuildError(what + " failed: " + cl_error_name(e.err()),
                             with_stderr(log, printed));
    if (!printed.empty()) std::fputs(printed.c_str(), stderr);
    throw_cl_error(what, e.what(), e.err());
  }
  if (const std::string printed = capture.finish(); !printed.empty())
    std::fputs(printed.c_str(), stderr);
  ++cache_stats_.source_builds;
  if (disk_cache_) {
    try {
      const auto binaries = program.getInfo<CL_PROGRAM_BINARIES>();
      if (binaries.size() == 1 && disk_cache_->store(key, binaries[0])) ++cache_stats_.disk_stores;
    } catch (const cl::Error&) {
      // a driver that cannot hand out binaries simply gets no cache entry
    }
  }
  programs_.emplace(key, program);
  return program;
}

DeviceRuntime::ProgramCacheStats DeviceRuntime::program_cache_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return cache_stats_;
}

std::string DeviceRuntime::disk_cache_state() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!disk_cache_checked_) {
    disk_cache_ = ProgramBinaryCache::for_device(caps_, &disk_cache_state_);
    disk_cache_checked_ = true;
  }
  return disk_cache_state_;
}

CapabilityCheck probe_did_not_build(const std::string& what, const std::string& build_log) {
  const std::string first = build_log.substr(0, build_log.find('\n'));
  return {false, what + (first.empty() ? std::string() : ": " + first)};
}

}  // namespace kvarn_cl::opencl
