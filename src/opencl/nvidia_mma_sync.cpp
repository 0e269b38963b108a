// The nvidia_mma_sync capability probe and policy (nvidia_mma_sync.hpp).
#include "opencl/nvidia_mma_sync.hpp"

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "kvarn_cl/error.hpp"
#include "opencl/program_table.hpp"
#include "util/env_switch.hpp"

namespace kvarn_cl::opencl {
namespace {

constexpr int kOut = 320;

// Expected results of kernels/mma_probe.cl (see its header for the layout).
std::vector<float> expected(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> e(kOut, 0.0f);
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int k = 0; k < 4; ++k) {
      const int r = g + 8 * (k >> 1), n = 2 * t + (k & 1);
      double s = 0;
      for (int j = 0; j < 16; ++j)
        s += double(a[std::size_t(r * 16 + j)]) * b[std::size_t(j * 8 + n)];
      e[std::size_t(lane * 4 + k)] = float(s);
    }
    e[std::size_t(128 + 2 * lane)] = float(8 * (2 * t) + g);
    e[std::size_t(128 + 2 * lane + 1)] = float(8 * (2 * t + 1) + g);
    const std::uint32_t wa = 0x9A3C5E71u * std::uint32_t(lane + 1),
                        wb = 0x6B2D4F83u * std::uint32_t(lane + 3);
    e[std::size_t(192 + 2 * lane)] = float((wa >> 12) & 15u);
    e[std::size_t(192 + 2 * lane + 1)] = float((wb >> 12) & 15u);
    e[std::size_t(256 + lane)] = float(t * 8 + 4 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7));
    e[std::size_t(288 + lane)] = -1.0f;  // checked separately (|high + low - 1/3| < 1e-7)
  }
  return e;
}

}  // namespace

CapabilityCheck run_mma_probe(DeviceRuntime& runtime, bool emulate) {
  try {
    const Program probe = emulate ? Program::mma_probe_emulated : Program::mma_probe;
    cl::Program program = runtime.program(program_spec(probe, ProgramArgs{}, runtime));
    std::vector<float> a(256), b(128), out(kOut, 0.0f);
    for (int i = 0; i < 256; ++i) a[std::size_t(i)] = float((i * 37) % 17 - 8) * 0.125f;
    for (int i = 0; i < 128; ++i) b[std::size_t(i)] = float((i * 11) % 13 - 6) * 0.25f;
    cl::CommandQueue queue(runtime.context(), runtime.device());
    cl::Buffer ba(runtime.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, a.size() * 4,
                  a.data());
    cl::Buffer bb(runtime.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, b.size() * 4,
                  b.data());
    cl::Buffer bo(runtime.context(), CL_MEM_WRITE_ONLY, out.size() * 4);
    cl::Kernel k(program, program_def(probe).kernels.at(0).name.c_str());
    k.setArg(0, ba);
    k.setArg(1, bb);
    k.setArg(2, bo);
    const std::size_t warp = kernel_work_group(probe, 0, ProgramArgs{}, runtime.caps());
    queue.enqueueNDRangeKernel(k, cl::NullRange, cl::NDRange(warp), cl::NDRange(warp));
    queue.enqueueReadBuffer(bo, CL_TRUE, 0, out.size() * 4, out.data());
    const std::vector<float> want = expected(a, b);
    for (int i = 0; i < kOut; ++i) {
      const bool ok = i >= 288 ? std::fabs(double(out[std::size_t(i)]) - 1.0 / 3.0) < 1e-7
                               : out[std::size_t(i)] == want[std::size_t(i)];
      if (!ok)
        return {false, "mma probe result " + std::to_string(i) + " is " +
                           std::to_string(out[std::size_t(i)]) + ", expected " +
                           (i >= 288 ? std::string("1/3") : std::to_string(want[std::size_t(i)]))};
    }
    return {true, emulate ? "emulated mma probe passed" : "mma.sync probe passed"};
  } catch (const KernelBuildError& e) {
    return probe_did_not_build("the inline-PTX probe does not build", e.build_log());
  } catch (const std::exception& e) {
    return {false, std::string("the mma probe failed: ") + e.what()};
  }
}

CapabilityCheck detect_nvidia_mma_sync(DeviceRuntime& runtime) {
  const char* env = std::getenv("KVARN_CL_MMA");
  if (util::read_switch(env) == util::Switch::off)
    return {false, "turned off by KVARN_CL_MMA=" + std::string(env)};
  const std::string vendor = runtime.caps().device_vendor + " " + runtime.caps().platform_name;
  if (vendor.find("NVIDIA") == std::string::npos)
    return {false, "not an NVIDIA device (the fast path is inline PTX)"};
  return run_mma_probe(runtime, false);
}

const CapabilityCheck& DeviceRuntime::nvidia_mma_sync() {
  std::call_once(nvidia_mma_sync_once_,
                 [this] { nvidia_mma_sync_ = detect_nvidia_mma_sync(*this); });
  return nvidia_mma_sync_;
}

}  // namespace kvarn_cl::opencl
