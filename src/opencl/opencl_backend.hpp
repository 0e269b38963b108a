// The OpenCL implementation of kvarn_cl::Backend.
//
// For kernels added in other files (attention: src/opencl/opencl_attend.cpp and its own .cl
// files), the class offers a small toolkit instead of private plumbing:
//   kernel(spec, "name")      the kernel of a program (built once per device, cached by the
//                             runtime; the cl::Kernel object is cached per backend and its arguments are
//                             set and enqueued under the call mutex of the public call using it)
//   geometry_options(params)  (codec_program.hpp) the record geometry as -D options
//   launch(kernel, global, local, what)   enqueue + error translation; keeps the event
//   upload(data, bytes, what) a read-only device copy of small host data (index lists) without
//                             synchronizing the queue
//   cl_buffer(buffer, "arg")  (opencl_buffer.hpp) the cl::Buffer of a Buffer argument
//   context(), device(), queue(), caps()
// Every public call holds call_mutex_ for its duration, so several threads (e.g. two caches on
// one backend) may use one backend: their calls are serialized, each one enqueues a consistent
// set of kernel arguments on the one queue. The toolkit below is for use inside such a call.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/device.hpp"
#include "opencl/cl_headers.hpp"
#include "opencl/device_runtime.hpp"
#include "opencl/opencl_buffer.hpp"

namespace kvarn_cl::opencl {

class OpenCLBackend final : public Backend {
 public:
  // `queue` must be an in-order queue of runtime->context() on runtime->device().
  OpenCLBackend(std::shared_ptr<DeviceRuntime> runtime, cl::CommandQueue queue);

  std::string name() const override;
  bool is_opencl() const noexcept override { return true; }

  std::unique_ptr<Buffer> allocate(std::size_t bytes) override;
  void write(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) override;
  void write_async(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) override;
  void read(const Buffer& src, std::size_t offset, void* dst, std::size_t bytes) override;
  void copy(const Buffer& src, std::size_t src_offset, Buffer& dst, std::size_t dst_offset,
            std::size_t bytes) override;

  void rotate(const CodecParams& params, const Buffer& in, ElementType in_type, std::size_t rows,
              Buffer& out, std::size_t out_row) override;
  void quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                const std::vector<QuantizeJob>& jobs, Buffer& records) override;
  void dequantize(const CodecParams& params, const Buffer& records,
                  const std::vector<std::uint32_t>& record_ids, Frame frame, Buffer& k_out,
                  Buffer& v_out) override;
  void attend(const AttendArgs& args) override;  // opencl_attend.cpp
  void attend_fp16(const AttendFp16Args& args) override;  // opencl_attend.cpp
  void copy_rows(const Buffer& src, Buffer& dst, const std::vector<RowRun>& runs,
                 std::size_t row_bytes) override;  // opencl_copy_rows.cpp
  void finish() override;
  std::int64_t first_row_out_of_range(const Buffer& rows_buf, std::size_t rows, int head_dim,
                                      float max_abs) override;  // opencl_check_rows.cpp
  std::size_t memory_capacity() const noexcept override {
    return std::size_t(caps().global_mem_bytes);
  }

  // --- toolkit for kernels of other files and for benchmarks ---------------------------------
  DeviceRuntime& runtime() noexcept { return *runtime_; }
  const cl::Context& context() const noexcept { return runtime_->context(); }
  const cl::Device& device() const noexcept { return runtime_->device(); }
  cl::CommandQueue& queue() noexcept { return queue_; }
  const DeviceCapabilities& caps() const noexcept { return runtime_->caps(); }

  cl::Kernel& kernel(const ProgramSpec& spec, const std::string& kernel_name);
  void launch(cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
              const char* what);
  cl::Buffer upload(const void* data, std::size_t bytes, const char* what);
  // The event of the last launch() (kernel time via profiling when the queue has
  // CL_QUEUE_PROFILING_ENABLE, which queues created by the library have).
  const cl::Event& last_event() const noexcept { return last_event_; }
  bool profiling() const noexcept { return profiling_; }

  // Q_RT of the quantize kernel for a geometry: 8, or 16 where the device cannot run the larger
  // work-group that 8 needs (decided once per geometry from CL_KERNEL_WORK_GROUP_SIZE).
  int quantize_tokens_per_item(const CodecParams& params);
  // Whether codec programs are built with -DKV_UNROLL=1 (GPU devices; codec_program.hpp).
  bool unroll_codec() const;

  // Attention (opencl_attend.cpp): context splits of later attend/attend_fp16 calls; 0 = chosen
  // per launch (attention_program.hpp), n > 0 forces n (clamped to the units of the longest
  // sequence). For tests and benchmarks.
  void set_attend_splits(int splits) noexcept { attend_splits_override_ = splits; }
  // Splits used by the last attend/attend_fp16 call, and the event of its split kernel (the
  // merge kernel's event is last_event()).
  int last_attend_splits() const noexcept { return last_attend_splits_; }
  const cl::Event& last_attend_split_event() const noexcept { return attend_split_event_; }
  // Fused attention kernel of later attend calls: chosen per launch (the matrix-unit kernel where
  // the device has it, matrix_units.hpp; else attention_program.hpp's attend_prefers_short_kernel),
  // or forced to attention.cl (tile slots), attention_short.cl, attention_mma.cl (inline PTX) or
  // attention_mma.cl with emulated primitives (any device; slow, for tests).
  // For tests and benchmarks; last_attend_kernel() says which one the last attend call ran.
  enum class AttendKernel { automatic, tile_slots, short_context, matrix_units, matrix_units_emulated };
  void set_attend_kernel(AttendKernel k) noexcept { attend_kernel_override_ = k; }
  AttendKernel last_attend_kernel() const noexcept { return last_attend_kernel_; }

 private:
  cl::Buffer& status_buffer();  // one uint: min index of a failing tile or row, ~0u when none
  std::uint32_t take_status(const char* what);

  // Serializes the public calls (cached cl::Kernel objects carry their arguments between setArg
  // and enqueue; see the class comment). Recursive: public calls may call each other.
  std::recursive_mutex call_mutex_;
  std::shared_ptr<DeviceRuntime> runtime_;
  cl::CommandQueue queue_;
  bool profiling_ = false;
  std::map<std::string, cl::Kernel> kernels_;
  std::map<std::string, int> quantize_rt_;
  cl::Buffer status_;
  cl::Event last_event_;

  // Attention (opencl_attend.cpp): split-K partials workspace (grown on demand) and knobs.
  cl::Buffer& attend_workspace(std::size_t bytes);
  void launch_attend_split_and_merge(cl::Kernel& split_kernel, cl::Kernel& merge_kernel,
                                     const cl::NDRange& split_global, std::size_t split_local,
                                     int num_splits,
                                     std::size_t rows, int head_dim, bool rotate_back,
                                     ElementType out_type, Buffer& out, const char* what);
  // The fused kernel for a launch (override, matrix units, or the portable policy).
  AttendKernel attend_kernel_for(std::size_t groups_portable, int max_units, int hpw_portable);
  // Split and merge kernels of a fused program, cached by a small key (no option strings per call).
  struct AttendPrograms {
    cl::Kernel* split;
    cl::Kernel* merge;
  };
  using AttendProgramKey = std::array<int, 4>;  // kind, preset, head_dim, heads per group
  AttendPrograms& attend_programs(AttendKernel kind, const CodecParams& params, int hpw);
  std::map<AttendProgramKey, AttendPrograms> attend_programs_;
  std::vector<SeqInfo> attend_info_rb_;
  std::vector<std::int32_t> attend_tables_rb_;  // read-back when no host copy
  // write_async staging: host copies that stay alive until their write has run.
  struct Staging {
    std::vector<unsigned char> bytes;
    cl::Event done;
  };
  std::vector<Staging> staging_;
  std::size_t staging_next_ = 0;
  cl::Buffer attend_ws_;
  std::size_t attend_ws_bytes_ = 0;
  int attend_splits_override_ = 0;
  int last_attend_splits_ = 0;
  AttendKernel attend_kernel_override_ = AttendKernel::automatic;
  AttendKernel last_attend_kernel_ = AttendKernel::automatic;
  cl::Event attend_split_event_;
};

// Creates the backend on a device chosen by discovery (own context and profiling queue).
std::unique_ptr<OpenCLBackend> make_opencl_backend_on(const FoundDevice& found);

}  // namespace kvarn_cl::opencl
