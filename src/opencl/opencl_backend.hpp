// The OpenCL implementation of kvarn_cl::Backend. Its public face is the Backend interface plus
// what the library itself needs (the device runtime and capabilities for `kvarn-cl info` and
// make_backend's device check); the knobs that tests and benchmarks turn are behind
// opencl_backend_tuning.hpp.
//
// Its calls are spread over files by job (opencl_backend.cpp: buffers and the codec,
// opencl_attend.cpp, opencl_copy_rows.cpp, opencl_check_rows.cpp); they share a small private
// toolkit:
//   kernel(program, args, "name")  a kernel of a program of the program table (program_table.hpp),
//                             built once per device (the runtime's program cache); the cl::Kernel
//                             object is cached per backend, its arguments set and enqueued under
//                             the call mutex of the public call using it
//   launch(kernel, global, local, what)   enqueue + error translation; keeps the event
//   upload(data, bytes, what) a read-only device copy of small host data (index lists) without
//                             synchronizing the queue
//   cl_buffer(buffer, "arg")  (opencl_buffer.hpp) the cl::Buffer of a Buffer argument
// Every public call holds call_mutex_ for its duration, so several threads (e.g. two caches on
// one backend) may use one backend: their calls are serialized, each one enqueues a consistent
// set of kernel arguments on the one queue.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend_api/host_memory.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/device.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/cl_headers.hpp"
#include "opencl/device_runtime.hpp"
#include "opencl/opencl_buffer.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl::opencl {
namespace internal {
class OpenCLBackendTuning;
}

class OpenCLBackend final : public Backend {
 public:
  // `queue` must be an in-order queue of runtime->context() on runtime->device().
  OpenCLBackend(std::shared_ptr<DeviceRuntime> runtime, cl::CommandQueue queue);

  std::string name() const override;
  BackendKind kind() const noexcept override { return BackendKind::opencl; }
  void warm_up() override;  // build_acceptance_programs (device_acceptance.hpp)

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
  void attend(const AttendArgs& args) override;           // opencl_attend.cpp
  void attend_fp16(const AttendFp16Args& args) override;  // opencl_attend.cpp
  void copy_rows(const Buffer& src, Buffer& dst, const std::vector<RowRun>& runs,
                 std::size_t row_bytes) override;  // opencl_copy_rows.cpp
  void finish() override;
  std::int64_t first_row_out_of_range(const Buffer& rows_buf, std::size_t rows, int head_dim,
                                      float max_abs) override;  // opencl_check_rows.cpp
  // The decode step's enqueue-only calls (opencl_step.cpp).
  void append_rows(const AppendRowsArgs& args) override;
  void quantize_deferred(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                         const Buffer& jobs, const std::vector<QuantizeJob>& host_jobs,
                         Buffer& records, StatusWord status) override;
  void wait_for(const std::vector<_cl_event*>& events) override;
  _cl_event* enqueue_marker() override;
  std::size_t memory_capacity() const noexcept override {
    // A CPU device (PoCL) allocates in this process: its limits apply too (host_memory.hpp).
    const std::size_t global = std::size_t(caps().global_mem_bytes), host = host_memory_capacity();
    return caps().type == "cpu" && host != 0 && host < global ? host : global;
  }

  // What the library needs beside the Backend interface (device_api.cpp, device_acceptance.cpp): the
  // device runtime (program builds, matrix-unit probe, program cache) and its capabilities.
  DeviceRuntime& runtime() noexcept { return *runtime_; }
  const DeviceCapabilities& caps() const noexcept { return runtime_->caps(); }

  // Q_RT of the quantize kernel for a geometry: 8, or 16 where the device cannot run the larger
  // work-group that 8 needs (decided once per geometry from CL_KERNEL_WORK_GROUP_SIZE). Builds
  // the geometry's codec program.
  int quantize_tokens_per_item(const CodecParams& params);

 private:
  friend class internal::OpenCLBackendTuning;

  const cl::Context& context() const noexcept { return runtime_->context(); }
  const cl::Device& device() const noexcept { return runtime_->device(); }

  cl::Kernel& kernel(const ProgramSpec& spec, const std::string& kernel_name);
  void check_fits_device(const cl::Kernel& k, const std::string& kernel_name,
                         const ProgramSpec& spec);
  cl::Kernel& kernel(Program program, const ProgramArgs& args, const std::string& kernel_name);
  void launch(cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
              const char* what);
  cl::Buffer upload(const void* data, std::size_t bytes, const char* what);
  // The quantize launch of quantize() and quantize_deferred(): status word `word` of `status`.
  void launch_quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                       const cl::Buffer& jobs, std::size_t num_jobs, Buffer& records,
                       const cl::Buffer& status, std::size_t word);

  // The status word: one uint, the least index of a failing tile or row, kNoFailure when none.
  static constexpr std::uint32_t kNoFailure = 0xFFFFFFFFu;
  cl::Buffer& status_buffer();  // reset to kNoFailure
  std::uint32_t take_status(const char* what);

  // Kernels of the codec programs, per geometry (rotation: per head_dim, its only parameter),
  // looked up by a small key: no option strings per call.
  struct CodecKernels {
    int tokens_per_item;
    std::size_t quantize_work_group, dequantize_work_group;  // their launch descriptors
    cl::Kernel* quantize;
    cl::Kernel* dequantize_rotated;
    cl::Kernel* dequantize_original;
  };
  CodecKernels& codec_kernels(const CodecParams& params);
  struct RotateKernels {
    cl::Kernel* f16;
    cl::Kernel* f32;
    cl::Kernel* append_f16;  // rotate.cl's decode-step append
    cl::Kernel* append_f32;
    std::size_t work_group;  // all four (rotate.cl ROT_WG)
  };
  RotateKernels& rotate_kernels(int head_dim);
  // Kernel `index` of a program without parameters (row copies, row checks).
  cl::Kernel& fixed_kernel(Program program, std::size_t index);
  // Its work-group size (its launch descriptor, program_table.hpp).
  std::size_t fixed_work_group(Program program, std::size_t index) const {
    return kernel_work_group(program, index, ProgramArgs{}, caps());
  }

  // Serializes the public calls (cached cl::Kernel objects carry their arguments between setArg
  // and enqueue; see the class comment). Recursive: public calls may call each other.
  std::recursive_mutex call_mutex_;
  std::shared_ptr<DeviceRuntime> runtime_;
  cl::CommandQueue queue_;
  std::map<std::string, cl::Kernel> kernels_;
  std::map<std::array<int, 2>, CodecKernels> codec_kernels_;  // preset, head_dim
  std::map<int, RotateKernels> rotate_kernels_;               // head_dim
  std::map<std::pair<Program, std::size_t>, cl::Kernel*> fixed_kernels_;
  cl::Buffer status_;
  cl::Event last_event_;

  // Attention (opencl_attend.cpp): the split and merge kernels of a program, cached by a small
  // key (no option strings per call), and how they are launched.
  struct AttendPrograms {
    cl::Kernel* split;
    cl::Kernel* merge;
    std::size_t work_group;  // of the split kernel (kernel_work_group)
    std::size_t merge_work_group;
    int heads_per_group;       // of the split kernel
    bool legacy_direct;        // AttendMerge::legacy stores the output from the split kernel
    cl_uint first_output_arg;  // index of its trailing (out_f16, out, part, num_parts, tickets,
                               // finish: kernels/attention_merge.cl AT_FINISH_*)
    std::string what;          // "attend: launching <split kernel>", for errors
  };
  // The split kernel (program_def(program).kernels[split_index]) and the merge kernel of one
  // attention program build, with their work-groups from the program table.
  AttendPrograms make_attend_programs(Program program, std::size_t split_index,
                                      const ProgramArgs& args, bool legacy_direct,
                                      const char* call);
  // kernel, preset, head_dim, heads per group, V accumulators in local memory (tile slots)
  using AttendProgramKey = std::array<int, 5>;
  AttendPrograms& attend_programs(AttendKernel kind, const CodecParams& params, int hpw,
                                  bool accumulators_local);
  AttendPrograms& attend_fp16_programs(int head_dim, int hpw);
  std::map<AttendProgramKey, AttendPrograms> attend_programs_;
  std::map<std::array<int, 2>, AttendPrograms> attend_fp16_programs_;  // head_dim, heads per group
  // The fused kernel for a launch (forced, matrix units, or the portable policy).
  AttendKernel attend_kernel_for(const CodecParams& params, std::size_t groups_portable,
                                 int max_units, int hpw_portable);
  // The split kernel, then (more than one split, or a kernel that only writes partials) the
  // merge, for `rows` query rows of S sequences; groups_y work-groups per sequence and split.
  void launch_attend(const AttendPrograms& p, std::size_t groups_y, std::size_t S, int splits,
                     std::size_t rows, int head_dim, bool rotate_back, ElementType out_type,
                     Buffer& out);
  cl::Buffer& attend_workspace(std::size_t bytes);  // split partials, grown on demand
  cl::Buffer attend_ws_;
  std::size_t attend_ws_bytes_ = 0;
  // In-kernel merge tickets, one int per work-group of a split, zero between launches (the
  // kernels reset them); grown (and zeroed) on demand.
  cl::Buffer& attend_tickets(std::size_t count);
  cl::Buffer attend_tickets_;
  std::size_t attend_tickets_count_ = 0;
  std::vector<SeqInfo> attend_info_rb_;
  std::vector<std::int32_t> attend_tables_rb_;  // read-back when no host copy

  // write_async staging: host copies that stay alive until their write has run.
  struct Staging {
    std::vector<unsigned char> bytes;
    cl::Event done;
  };
  std::vector<Staging> staging_;
  std::size_t staging_next_ = 0;

  // Tuning (opencl_backend_tuning.hpp): forced kernel and splits, and what the last attend ran.
  int attend_splits_override_ = 0;
  AttendKernel attend_kernel_override_ = AttendKernel::automatic;
  AttendMerge attend_merge_override_ = AttendMerge::automatic;
  TileSlotAccumulators tile_slot_accumulators_override_ = TileSlotAccumulators::automatic;
  // The last tile-slot launch's V accumulators (registers or local; automatic before any).
  TileSlotAccumulators last_tile_slot_accumulators_ = TileSlotAccumulators::automatic;
  AttendMerge last_attend_merge_ = AttendMerge::automatic;  // in_kernel, separate_launch or
                                                            // automatic (one split: no merge)
  int last_attend_splits_ = 0;
  AttendKernel last_attend_kernel_ = AttendKernel::automatic;
  cl::Event attend_split_event_;
  // Benchmarks only (OpenCLBackendTuning): keep each launch's event (last_event_,
  // attend_split_event_), and append every launch's event to a log. Off, launches ask for no event:
  // the library itself never waits on one, and each costs the driver an allocation per enqueue.
  bool keep_events_ = false;
  std::vector<cl::Event>* kernel_event_log_ = nullptr;
};

// Creates the backend on a device chosen by discovery (own context and profiling queue).
std::unique_ptr<OpenCLBackend> make_opencl_backend_on(const FoundDevice& found);

}  // namespace kvarn_cl::opencl
