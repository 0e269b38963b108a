// Timing helpers shared by the OpenCL benchmarks: kernel time from event profiling, medians, and
// the device's copy bandwidth measured in the same run (GPU.md: report ratios against it).
#pragma once

// Compiled into every benchmark (benchmarks/CMakeLists.txt); empty in builds without OpenCL.
#if KVARN_CL_WITH_OPENCL

#include <cstddef>
#include <vector>

#include "opencl/cl_headers.hpp"

namespace kvarn_cl::bench {

// Seconds between CL_PROFILING_COMMAND_START and _END of a finished event (the event's queue
// must have CL_QUEUE_PROFILING_ENABLE).
double event_seconds(const cl::Event& event);

double median(std::vector<double> values);

// Seconds from the start of `first` to the end of `last` (finished events of a profiling queue):
// the kernel time of a multi-launch step.
double span_seconds(const cl::Event& first, const cl::Event& last);

// A throughput probe: kernel `kernel_name` of `source`, taking (__global float* out, int iters),
// launched over `items` work-items in groups of `local` on `queue` (which must have
// CL_QUEUE_PROFILING_ENABLE), once to warm up and then `repetitions` times. Returns the median
// kernel seconds. Throws std::runtime_error with the build log when the source does not build.
double probe_kernel_seconds(const cl::Context& context, const cl::CommandQueue& queue,
                            const char* source, const char* kernel_name, std::size_t items,
                            std::size_t local, int iters, int repetitions = 5);

// Copy bandwidth of the device behind `queue`: a kernel copying `bytes` bytes with one uint4 load
// and store per work-item, timed with event profiling (a profiling queue of its own when `queue`
// has none), after a warm-up; the median of `repetitions` runs. Returns GB/s (1e9 B/s) counting
// bytes read + bytes written, the convention of GPU.md's anchors.
double measure_copy_bandwidth_gbs(const cl::Context& context, const cl::CommandQueue& queue,
                                  std::size_t bytes, int repetitions = 9);

}  // namespace kvarn_cl::bench

#endif  // KVARN_CL_WITH_OPENCL
