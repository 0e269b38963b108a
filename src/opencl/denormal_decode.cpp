// The denormal_decode capability probe and policy (denormal_decode.hpp).
#include "opencl/denormal_decode.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "kvarn_cl/error.hpp"
#include "util/env_switch.hpp"

namespace kvarn_cl::opencl {
namespace {

constexpr std::size_t kProbeItems = 64;
constexpr int kPositions = 21;  // kernels/denormal_probe.cl: bit i % 21, the mantissa's codes
// Denormal operands may cost at most this much more than normal ones: the decode saves about 15 %
// of the inner loops' issue slots (per word of 8 codes at 4 heads per group, K 50 to 43 and V 50 to
// 42; docs/PERFORMANCE.md, "What bounds the portable kernels"), which multiply-adds that much
// slower would take back; a slow path costs several times more.
constexpr double kSlowestRate = 1.15;

std::string hex(float v) {
  std::ostringstream s;
  s << std::hexfloat << v;
  return s.str();
}

}  // namespace

std::size_t denormal_probe_work_group(const ProgramArgs&, const DeviceCapabilities&) {
  return kProbeItems;
}

CapabilityCheck run_denormal_probe(DeviceRuntime& runtime) {
  try {
    const Program probe = Program::denormal_probe;
    cl::Program program = runtime.program(program_spec(probe, ProgramArgs{}, runtime));
    const std::size_t n = kernel_work_group(probe, 0, ProgramArgs{}, runtime.caps());
    std::vector<std::uint32_t> words(n);
    std::vector<float> factors(2 * n), out(n, -1.0f), want(n);
    for (std::size_t i = 0; i < n; ++i) {
      const int p = int(i % kPositions);
      const std::uint32_t code = std::uint32_t(1 + i % 15);
      const std::uint32_t mask = 0xFu << p;
      // The code in place, every bit around it set: only the AND keeps the code alone.
      words[i] = (code << p) | ~mask;
      factors[i] = std::ldexp(3.0f, 100);
      factors[n + i] = std::ldexp(1.0f, p - 49);
      want[i] = std::ldexp(float(3 * code + 1), p - 49);
    }
    cl::CommandQueue queue(runtime.context(), runtime.device());
    cl::Buffer bw(runtime.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, words.size() * 4,
                  words.data());
    cl::Buffer bf(runtime.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, factors.size() * 4,
                  factors.data());
    cl::Buffer bo(runtime.context(), CL_MEM_WRITE_ONLY, out.size() * 4);
    cl::Kernel k(program, program_def(probe).kernels.at(0).name.c_str());
    k.setArg(0, bw);
    k.setArg(1, bf);
    k.setArg(2, bo);
    queue.enqueueNDRangeKernel(k, cl::NullRange, cl::NDRange(n), cl::NDRange(n));
    queue.enqueueReadBuffer(bo, CL_TRUE, 0, out.size() * 4, out.data());
    for (std::size_t i = 0; i < n; ++i)
      if (out[i] != want[i])
        return {false, "denormal probe result " + std::to_string(i) + " is " + hex(out[i]) +
                           ", expected " + hex(want[i]) +
                           (out[i] == factors[n + i] ? " (denormal operand flushed to zero)" : "")};
    return {true, "denormal probe passed (fp32 keeps denormal operands)"};
  } catch (const KernelBuildError& e) {
    return probe_did_not_build("the denormal probe does not build", e.build_log());
  } catch (const std::exception& e) {
    return {false, std::string("the denormal probe failed: ") + e.what()};
  }
}

DenormalRate measure_denormal_rate(DeviceRuntime& runtime, int iters, int groups_per_unit) {
  const Program probe = Program::denormal_probe;
  cl::Program program = runtime.program(program_spec(probe, ProgramArgs{}, runtime));
  const std::size_t wg = kernel_work_group(probe, 1, ProgramArgs{}, runtime.caps());
  const std::size_t n = wg * std::size_t(std::max(groups_per_unit, 1)) *
                        std::max<std::size_t>(runtime.caps().compute_units, 1);
  cl::CommandQueue queue(runtime.context(), runtime.device(), CL_QUEUE_PROFILING_ENABLE);
  // 2^-140 is denormal, 2^-60 normal: the same instructions on operands of either kind.
  float operands[2] = {std::ldexp(1.0f, -140), std::ldexp(1.0f, -60)};
  cl::Buffer bf[2], bo(runtime.context(), CL_MEM_WRITE_ONLY, n * 4);
  for (int kind = 0; kind < 2; ++kind)
    bf[kind] = cl::Buffer(runtime.context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(float),
                          &operands[kind]);
  cl::Kernel k(program, program_def(probe).kernels.at(1).name.c_str());
  double best[2] = {1e300, 1e300};
  // A warm-up launch of each, then three timed rounds alternating the two; the fastest of each.
  for (int round = 0; round < 4; ++round) {
    for (int kind = 0; kind < 2; ++kind) {
      k.setArg(0, bf[kind]);
      k.setArg(1, bo);
      k.setArg(2, std::max(iters, 1));
      cl::Event e;
      queue.enqueueNDRangeKernel(k, cl::NullRange, cl::NDRange(n), cl::NDRange(wg), nullptr, &e);
      e.wait();
      const double ns = double(e.getProfilingInfo<CL_PROFILING_COMMAND_END>() -
                               e.getProfilingInfo<CL_PROFILING_COMMAND_START>());
      if (round > 0) best[kind] = std::min(best[kind], ns);
    }
  }
  return {best[0] / 1e3, best[1] / 1e3};
}

CapabilityCheck detect_denormal_decode(DeviceRuntime& runtime) {
  const char* env = std::getenv("KVARN_CL_DENORMAL_DECODE");
  const util::Switch choice = util::read_switch(env);
  if (choice == util::Switch::off)
    return {false, "turned off by KVARN_CL_DENORMAL_DECODE=" + std::string(env)};
  const bool forced = choice == util::Switch::on;
  // Any other value is not an error (the check never throws): the policy decides, and says so.
  const std::string ignored =
      choice == util::Switch::other
          ? "KVARN_CL_DENORMAL_DECODE=" + std::string(env) + " is not 0, 1, off or on: ignored; "
          : "";
  if (!runtime.caps().denormals) {
    const char* limits = std::getenv("KVARN_CL_DEVICE_LIMITS");
    if (limits != nullptr && std::string(limits).find("denormals") != std::string::npos)
      return {false,
              ignored + "no fp32 denormals under KVARN_CL_DEVICE_LIMITS=" + std::string(limits)};
    return {false, ignored + "the device's fp32 does not report denormals (CL_FP_DENORM)"};
  }
  if (!forced && runtime.caps().type != "gpu")
    return {false, ignored + "not a GPU (a " + runtime.caps().type +
                       " takes a slow assist per denormal operand; KVARN_CL_DENORMAL_DECODE=1 "
                       "asks for it)"};
  CapabilityCheck c = run_denormal_probe(runtime);
  c.reason = ignored + c.reason;
  if (!c.available) return c;
  if (forced) {
    c.reason += "; asked for by KVARN_CL_DENORMAL_DECODE=" + std::string(env);
    return c;
  }
  try {
    const DenormalRate rate = measure_denormal_rate(runtime);
    char what[160];
    std::snprintf(what, sizeof what,
                  "; multiply-adds on denormal operands %.1f us against %.1f us on normal ones",
                  rate.denormal_us, rate.normal_us);
    c.reason += what;
    if (!(rate.denormal_us <= kSlowestRate * rate.normal_us)) {
      c.available = false;
      c.reason += ": slower, so not used";
    }
  } catch (const std::exception& e) {
    return {false, std::string("the denormal rate check failed: ") + e.what()};
  }
  return c;
}

const CapabilityCheck& DeviceRuntime::denormal_decode() {
  std::call_once(denormal_decode_once_,
                 [this] { denormal_decode_ = detect_denormal_decode(*this); });
  return denormal_decode_;
}

}  // namespace kvarn_cl::opencl
