#include "common/opencl_timing.hpp"

#if KVARN_CL_WITH_OPENCL

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kvarn_cl::bench {
namespace {

const char* const kCopySource = R"CLC(
__kernel void copy_uint4(__global const uint4* src, __global uint4* dst) {
  const size_t i = get_global_id(0);
  dst[i] = src[i];
}
)CLC";

cl::Program build(const cl::Context& context, const cl::Device& device, const char* source,
                  const char* what) {
  cl::Program program(context, source);
  try {
    program.build(std::vector<cl::Device>{device}, "-cl-std=CL1.2");
  } catch (const cl::BuildError& e) {
    std::string log;
    for (const auto& l : e.getBuildLog()) log += l.second;
    throw std::runtime_error(std::string(what) + " failed to build: " + log);
  }
  return program;
}

// The median kernel seconds of `repetitions` launches after one warm-up.
double median_launch_seconds(const cl::CommandQueue& queue, const cl::Kernel& kernel,
                             std::size_t items, std::size_t local, int repetitions) {
  std::vector<double> seconds;
  for (int r = -1; r < repetitions; ++r) {  // r = -1: warm-up
    cl::Event ev;
    queue.enqueueNDRangeKernel(kernel, cl::NullRange, cl::NDRange(items), cl::NDRange(local), nullptr, &ev);
    ev.wait();
    if (r >= 0) seconds.push_back(event_seconds(ev));
  }
  return median(seconds);
}

}  // namespace

double event_seconds(const cl::Event& event) {
  const cl_ulong start = event.getProfilingInfo<CL_PROFILING_COMMAND_START>();
  const cl_ulong end = event.getProfilingInfo<CL_PROFILING_COMMAND_END>();
  return double(end - start) * 1e-9;
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double measure_copy_bandwidth_gbs(const cl::Context& context, const cl::CommandQueue& queue,
                                  std::size_t bytes, int repetitions) {
  const cl::Device device = queue.getInfo<CL_QUEUE_DEVICE>();
  cl::CommandQueue q = queue;
  if ((queue.getInfo<CL_QUEUE_PROPERTIES>() & CL_QUEUE_PROFILING_ENABLE) == 0)
    q = cl::CommandQueue(context, device, CL_QUEUE_PROFILING_ENABLE);
  const std::size_t local = 256;
  const std::size_t vectors = std::max<std::size_t>(bytes / 16 / local, 1) * local;
  cl::Kernel kernel(build(context, device, kCopySource, "copy kernel"), "copy_uint4");
  cl::Buffer src(context, CL_MEM_READ_WRITE, vectors * 16);
  cl::Buffer dst(context, CL_MEM_READ_WRITE, vectors * 16);
  q.enqueueFillBuffer(src, cl_uint(0x3C003C00u), 0, vectors * 16);
  kernel.setArg(0, src);
  kernel.setArg(1, dst);
  return 2.0 * double(vectors * 16) / median_launch_seconds(q, kernel, vectors, local, repetitions) * 1e-9;
}

double span_seconds(const cl::Event& first, const cl::Event& last) {
  const cl_ulong a = first.getProfilingInfo<CL_PROFILING_COMMAND_START>();
  const cl_ulong b = last.getProfilingInfo<CL_PROFILING_COMMAND_END>();
  return double(b - a) * 1e-9;
}

double probe_kernel_seconds(const cl::Context& context, const cl::CommandQueue& queue,
                            const char* source, const char* kernel_name, std::size_t items,
                            std::size_t local, int iters, int repetitions) {
  const cl::Device device = queue.getInfo<CL_QUEUE_DEVICE>();
  cl::Kernel kernel(build(context, device, source, kernel_name), kernel_name);
  cl::Buffer out(context, CL_MEM_READ_WRITE, items * sizeof(float));
  kernel.setArg(0, out);
  kernel.setArg(1, iters);
  return median_launch_seconds(queue, kernel, items, local, repetitions);
}

}  // namespace kvarn_cl::bench

#endif  // KVARN_CL_WITH_OPENCL
