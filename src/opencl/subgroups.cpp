// The subgroups capability probe and policy (subgroups.hpp).
#include "opencl/subgroups.hpp"

#include <cstdlib>
#include <string>
#include <vector>

#include "kvarn_cl/error.hpp"

namespace kvarn_cl::opencl {
namespace {

constexpr std::size_t kProbeItems = 128;
constexpr int kHeads = 4;  // kernels/subgroups_probe.cl SG_HEADS

std::string number(float v) {
  const long long i = static_cast<long long>(v);
  return float(i) == v ? std::to_string(i) : std::to_string(v);
}

}  // namespace

std::size_t subgroups_probe_work_group(const ProgramArgs&, const DeviceCapabilities&) {
  return kProbeItems;
}

CapabilityCheck run_subgroups_probe(DeviceRuntime& runtime) {
  try {
    const Program probe = Program::subgroups_probe;
    cl::Program program = runtime.program(program_spec(probe, ProgramArgs{}, runtime));
    const std::size_t n = kernel_work_group(probe, 0, ProgramArgs{}, runtime.caps());
    // Distinct small whole numbers in a scrambled order, some negative: every sum order is exact.
    std::vector<float> in(n), out(2 * n + kHeads + 3, -1.0f);
    for (std::size_t i = 0; i < n; ++i) in[i] = float(int((i * 37) % n) - 40);
    cl::CommandQueue queue(runtime.context(), runtime.device());
    cl::Buffer bi(runtime.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, in.size() * 4,
                  in.data());
    cl::Buffer bo(runtime.context(), CL_MEM_WRITE_ONLY, out.size() * 4);
    cl::Kernel k(program, program_def(probe).kernels.at(0).name.c_str());
    k.setArg(0, bi);
    k.setArg(1, bo);
    queue.enqueueNDRangeKernel(k, cl::NullRange, cl::NDRange(n), cl::NDRange(n));
    queue.enqueueReadBuffer(bo, CL_TRUE, 0, out.size() * 4, out.data());
    float mx = in[0], sum = 0.0f;
    for (float v : in) {
      mx = v > mx ? v : mx;
      sum += v;
    }
    std::vector<float> want(2 * n + kHeads);
    for (std::size_t i = 0; i < n; ++i) {
      want[i] = mx;
      want[n + i] = sum;
    }
    for (int h = 0; h < kHeads; ++h) {
      float m = -1e30f;
      for (std::size_t i = h * n / kHeads; i < (h + 1) * n / kHeads; ++i) m = in[i] > m ? in[i] : m;
      want[2 * n + std::size_t(h)] = m;
    }
    for (std::size_t i = 0; i < want.size(); ++i)
      if (out[i] != want[i])
        return {false, "subgroup probe result " + std::to_string(i) + " is " + number(out[i]) +
                           ", expected " + number(want[i])};
    const float size = out[2 * n + kHeads], groups = out[2 * n + kHeads + 1];
    const bool intel = out[2 * n + kHeads + 2] == 1.0f;
    return {true, std::string("subgroup probe passed: ") +
                      (intel ? "cl_intel_subgroups" : "cl_khr_subgroups") + ", subgroups of " +
                      number(size) + " items (" + number(groups) + " in the probe's group of " +
                      std::to_string(n) + ")"};
  } catch (const KernelBuildError& e) {
    return probe_did_not_build("the subgroup probe does not build", e.build_log());
  } catch (const std::exception& e) {
    return {false, std::string("the subgroup probe failed: ") + e.what()};
  }
}

CapabilityCheck detect_subgroups(DeviceRuntime& runtime) {
  if (!runtime.caps().subgroups) {
    const char* limits = std::getenv("KVARN_CL_DEVICE_LIMITS");
    if (limits != nullptr && std::string(limits).find("subgroups") != std::string::npos)
      return {false, "no subgroups under KVARN_CL_DEVICE_LIMITS=" + std::string(limits)};
    return {false, "the device reports neither cl_intel_subgroups nor cl_khr_subgroups"};
  }
  return run_subgroups_probe(runtime);
}

const CapabilityCheck& DeviceRuntime::subgroups() {
  std::call_once(subgroups_once_, [this] { subgroups_ = detect_subgroups(*this); });
  return subgroups_;
}

}  // namespace kvarn_cl::opencl
