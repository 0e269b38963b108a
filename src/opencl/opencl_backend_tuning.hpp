// Tests' and benchmarks' access to an OpenCLBackend's internals: forcing the fused attention
// kernel or the context splits, what the last attend call ran and its kernel events, and the
// backend's kernels, queue and launches for driving program variants directly. Not part of the
// library's interface: the library never uses it.
#pragma once

#include <string>
#include <vector>

#include "opencl/attention_program.hpp"
#include "opencl/opencl_backend.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl::internal {

class OpenCLBackendTuning {
 public:
  // From here on the backend keeps the event of every launch (last_event(), last_attend_split_event()).
  explicit OpenCLBackendTuning(OpenCLBackend& backend) noexcept : b_(backend) {
    b_.keep_events_ = true;
  }

  // The fused kernel of later attend calls (AttendKernel::automatic: the launch policy).
  void force_attend_kernel(AttendKernel kernel) noexcept { b_.attend_kernel_override_ = kernel; }
  // Context splits of later attend/attend_fp16 calls; 0 = chosen per launch
  // (attention_program.hpp), n > 0 forces n (clamped to the units of the longest sequence).
  void force_attend_splits(int splits) noexcept { b_.attend_splits_override_ = splits; }
  // How later attend/attend_fp16 calls with more than one split merge them (attention_program.hpp):
  // automatic (the policy), in_kernel (one launch), separate_launch (the merge kernel), or legacy
  // (the path before the one-launch change, for A/B: also partials + merge at one split for
  // attention_short.cl and the fp16 program).
  void force_attend_merge(AttendMerge merge) noexcept { b_.attend_merge_override_ = merge; }
  // Where later tile-slot launches keep their V accumulators (automatic: per launch,
  // attend_tile_slots_prefers_local_accumulators); local builds registers where it does not fit.
  void force_tile_slot_accumulators(TileSlotAccumulators where) noexcept {
    b_.tile_slot_accumulators_override_ = where;
  }
  // Where the last tile-slot launch kept them: registers or local (automatic before any).
  TileSlotAccumulators last_tile_slot_accumulators() const noexcept {
    return b_.last_tile_slot_accumulators_;
  }

  // What the last attend call ran, and the last attend/attend_fp16 call's splits.
  AttendKernel last_attend_kernel() const noexcept { return b_.last_attend_kernel_; }
  int last_attend_splits() const noexcept { return b_.last_attend_splits_; }
  // How the last attend/attend_fp16 call ended: in_kernel, separate_launch, or automatic when the
  // split kernel stored the output itself (one split, one launch).
  AttendMerge last_attend_merge() const noexcept { return b_.last_attend_merge_; }
  // Events (kernel time by profiling: queues made by the library have CL_QUEUE_PROFILING_ENABLE)
  // of the last attend/attend_fp16 call's split kernel, and of the last launch of any call (for
  // attend: the merge kernel's when there was a merge launch).
  const cl::Event& last_attend_split_event() const noexcept { return b_.attend_split_event_; }
  const cl::Event& last_event() const noexcept { return b_.last_event_; }

  // Every kernel launch of later calls appends its event to *log (nullptr: stop): the kernel-time
  // sum of a whole decode step.
  void log_kernel_events(std::vector<cl::Event>* log) noexcept { b_.kernel_event_log_ = log; }

  // The backend's program builds and launches, for program variants beyond what it runs itself.
  ProgramSpec program_spec(Program program, const ProgramArgs& args) const {
    return opencl::program_spec(program, args, *b_.runtime_);
  }
  cl::Kernel& kernel(const ProgramSpec& spec, const std::string& kernel_name) {
    return b_.kernel(spec, kernel_name);
  }
  void launch(cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
              const char* what) {
    b_.launch(kernel, global, local, what);
  }
  cl::Buffer upload(const void* data, std::size_t bytes, const char* what) {
    return b_.upload(data, bytes, what);
  }
  const cl::Context& context() const noexcept { return b_.context(); }
  const cl::Device& device() const noexcept { return b_.device(); }
  cl::CommandQueue& queue() noexcept { return b_.queue_; }

 private:
  OpenCLBackend& b_;
};

}  // namespace kvarn_cl::opencl::internal
