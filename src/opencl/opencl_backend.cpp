// OpenCLBackend: buffers, rotation, quantization and dequantization on an OpenCL device.
// Each codec call is one kernel launch over the whole batch (docs/ARCHITECTURE.md).
#include "opencl/opencl_backend.hpp"

#include <algorithm>
#include <limits>
#include <sstream>
#include <utility>

#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/device_acceptance.hpp"

namespace kvarn_cl::opencl {
namespace {

void check_u32(std::size_t value, const char* argument) {
  if (value > std::numeric_limits<std::uint32_t>::max())
    throw InvalidArgument(std::string(argument) + " = " + std::to_string(value) +
                          " exceeds the 32-bit range the OpenCL kernels index with");
}

}  // namespace

const cl::Buffer& cl_buffer(const Buffer& buffer, const char* argument) {
  const auto* b = dynamic_cast<const ClBuffer*>(&buffer);
  if (b == nullptr)
    throw InvalidArgument(std::string(argument) +
                          " is not a buffer of an OpenCL backend (allocate it with this backend "
                          "or wrap a cl_mem with wrap_opencl_buffer)");
  return b->mem();
}

OpenCLBackend::OpenCLBackend(std::shared_ptr<DeviceRuntime> runtime, cl::CommandQueue queue)
    : runtime_(std::move(runtime)), queue_(std::move(queue)) {}

std::string OpenCLBackend::name() const {
  return "opencl: " + caps().platform_name + " / " + caps().device_name;
}

void OpenCLBackend::warm_up() {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  build_acceptance_programs(*this);
}

std::unique_ptr<Buffer> OpenCLBackend::allocate(std::size_t bytes) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  if (bytes > caps().max_alloc_bytes)
    throw OutOfMemory("allocate: " + std::to_string(bytes) +
                      " bytes exceed the largest single "
                      "allocation of " +
                      caps().device_name + " (CL_DEVICE_MAX_MEM_ALLOC_SIZE = " +
                      std::to_string(caps().max_alloc_bytes) + ")");
  // A zero-byte cl_mem is invalid; keep one byte behind an empty Buffer.
  cl::Buffer mem = cl_call(
      "allocate " + std::to_string(bytes) + " bytes on " + caps().device_name,
      [&] { return cl::Buffer(context(), CL_MEM_READ_WRITE, std::max<std::size_t>(bytes, 1)); },
      ClContext::allocation);
  return std::make_unique<ClBuffer>(std::move(mem), bytes);
}

void OpenCLBackend::write(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_range(dst, offset, bytes, "write: dst");
  if (bytes == 0) return;
  const cl::Buffer& mem = cl_buffer(dst, "write: dst");
  cl_call("write " + std::to_string(bytes) + " bytes to the device",
          [&] { queue_.enqueueWriteBuffer(mem, CL_TRUE, offset, bytes, src); });
}

void OpenCLBackend::write_async(Buffer& dst, std::size_t offset, const void* src,
                                std::size_t bytes) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_range(dst, offset, bytes, "write_async: dst");
  if (bytes == 0) return;
  const cl::Buffer& mem = cl_buffer(dst, "write_async: dst");
  // A ring of host copies: a copy is reused only after the write that read it has run (its
  // event), which for a ring of 16 is long done in a decode loop; so the call never waits for
  // the queue to drain, unlike a blocking write behind the previous step's kernels.
  constexpr std::size_t kRing = 16;
  if (staging_.size() < kRing) staging_.resize(kRing);
  Staging& slot = staging_[staging_next_++ % kRing];
  if (slot.done()) cl_call("write_async: waiting for a staging copy", [&] { slot.done.wait(); });
  slot.bytes.assign(static_cast<const unsigned char*>(src),
                    static_cast<const unsigned char*>(src) + bytes);
  cl_call("write " + std::to_string(bytes) + " bytes to the device", [&] {
    queue_.enqueueWriteBuffer(mem, CL_FALSE, offset, bytes, slot.bytes.data(), nullptr, &slot.done);
  });
}

void OpenCLBackend::read(const Buffer& src, std::size_t offset, void* dst, std::size_t bytes) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_range(src, offset, bytes, "read: src");
  if (bytes == 0) return;
  const cl::Buffer& mem = cl_buffer(src, "read: src");
  cl_call("read " + std::to_string(bytes) + " bytes from the device",
          [&] { queue_.enqueueReadBuffer(mem, CL_TRUE, offset, bytes, dst); });
}

void OpenCLBackend::copy(const Buffer& src, std::size_t src_offset, Buffer& dst,
                         std::size_t dst_offset, std::size_t bytes) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_range(src, src_offset, bytes, "copy: src");
  check_range(dst, dst_offset, bytes, "copy: dst");
  if (bytes == 0) return;
  const cl::Buffer& s = cl_buffer(src, "copy: src");
  const cl::Buffer& d = cl_buffer(dst, "copy: dst");
  cl_call("copy " + std::to_string(bytes) + " bytes on the device",
          [&] { queue_.enqueueCopyBuffer(s, d, src_offset, dst_offset, bytes); });
}

void OpenCLBackend::finish() {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  cl_call("waiting for the OpenCL queue", [&] { queue_.finish(); });
}

cl::Kernel& OpenCLBackend::kernel(const ProgramSpec& spec, const std::string& kernel_name) {
  std::string key = kernel_name + '|' + spec.options;
  for (const std::string& f : spec.files) key += '|' + f;
  auto it = kernels_.find(key);
  if (it != kernels_.end()) return it->second;
  cl::Program program = runtime_->program(spec);
  cl::Kernel k = cl_call("creating kernel " + kernel_name,
                         [&] { return cl::Kernel(program, kernel_name.c_str()); });
  check_fits_device(k, kernel_name, spec);
  return kernels_.emplace(std::move(key), std::move(k)).first->second;
}

// A kernel's static local memory and the work-group it was compiled for
// (reqd_work_group_size) must fit the limits the runtime plans with, caps(): what the device
// reports, lowered by KVARN_CL_DEVICE_LIMITS in the limit-profile test mode. A real device would
// refuse the launch anyway (CL_OUT_OF_RESOURCES, CL_INVALID_WORK_GROUP_SIZE); checked here, the
// error names the kernel and the limit, and a lowered profile binds on a device that has more
// (PoCL's 2 MiB of local memory).
void OpenCLBackend::check_fits_device(const cl::Kernel& k, const std::string& kernel_name,
                                      const ProgramSpec& spec) {
  const cl_ulong local = cl_call("reading CL_KERNEL_LOCAL_MEM_SIZE of " + kernel_name, [&] {
    return k.getWorkGroupInfo<CL_KERNEL_LOCAL_MEM_SIZE>(device());
  });
  const auto reqd = cl_call("reading CL_KERNEL_COMPILE_WORK_GROUP_SIZE of " + kernel_name, [&] {
    return k.getWorkGroupInfo<CL_KERNEL_COMPILE_WORK_GROUP_SIZE>(device());
  });
  const std::uint64_t items = std::uint64_t(reqd[0]) * reqd[1] * reqd[2];
  std::string why;
  if (local > caps().local_mem_bytes)
    why = std::to_string(local) + " bytes of local memory, the device has " +
          std::to_string(caps().local_mem_bytes);
  else if (items > caps().max_work_group_size)
    why = "work-groups of " + std::to_string(items) + " work-items, the device allows " +
          std::to_string(caps().max_work_group_size);
  if (!why.empty())
    throw Unsupported("kernel " + kernel_name + " (options '" + spec.options + "') needs " + why);
}

cl::Kernel& OpenCLBackend::kernel(Program program, const ProgramArgs& args,
                                  const std::string& kernel_name) {
  return kernel(program_spec(program, args, *runtime_), kernel_name);
}

cl::Kernel& OpenCLBackend::fixed_kernel(Program program, std::size_t index) {
  cl::Kernel*& k = fixed_kernels_[{program, index}];
  if (k == nullptr)
    k = &kernel(program, ProgramArgs{}, program_def(program).kernels.at(index).name);
  return *k;
}

void OpenCLBackend::launch(cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local,
                           const char* what) {
  cl::Event* event = keep_events_ || kernel_event_log_ != nullptr ? &last_event_ : nullptr;
  cl_call(what, [&] {
    queue_.enqueueNDRangeKernel(kernel, cl::NullRange, global, local, nullptr, event);
  });
  if (kernel_event_log_ != nullptr) kernel_event_log_->push_back(last_event_);
}

cl::Buffer OpenCLBackend::upload(const void* data, std::size_t bytes, const char* what) {
  // CL_MEM_COPY_HOST_PTR copies at creation: the host data may go away right after, and the
  // queue is not synchronized (the buffer lives on while kernels that use it are pending).
  return cl_call(
      what,
      [&] {
        return cl::Buffer(context(), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                          std::max<std::size_t>(bytes, 1), const_cast<void*>(data));
      },
      ClContext::allocation);
}

cl::Buffer& OpenCLBackend::status_buffer() {
  if (status_() == nullptr)
    status_ = cl_call(
        "allocating the status word",
        [&] { return cl::Buffer(context(), CL_MEM_READ_WRITE, sizeof(std::uint32_t)); },
        ClContext::allocation);
  const std::uint32_t none = kNoFailure;
  cl_call("resetting the status word",
          [&] { queue_.enqueueFillBuffer(status_, none, 0, sizeof none); });
  return status_;
}

std::uint32_t OpenCLBackend::take_status(const char* what) {
  std::uint32_t s = kNoFailure;
  cl_call(what, [&] { queue_.enqueueReadBuffer(status_, CL_TRUE, 0, sizeof s, &s); });
  return s;
}

OpenCLBackend::CodecKernels& OpenCLBackend::codec_kernels(const CodecParams& params) {
  const std::array<int, 2> key{int(params.preset), params.head_dim};
  auto it = codec_kernels_.find(key);
  if (it != codec_kernels_.end()) return it->second;
  // Q_RT = 8 keeps 64 values per work-item; a device (or a register-hungry build of the kernel)
  // that cannot run that many work-items per group gets Q_RT = 16 (half the group, 128 values),
  // and one of 128-item groups at D 256 · G 128 gets Q_RT = 32 (256 values); below 24 KiB of
  // local memory D 256 takes 16 or 32 (quantize_fits_device: fewer channel partials).
  const std::vector<KernelDef>& kernels = program_def(Program::codec).kernels;
  int last_rt = 0;
  for (int rt : {8, 16, 32}) {
    if (params.group() % rt != 0) continue;
    last_rt = rt;
    ProgramArgs args;
    args.params = params;
    args.tokens_per_item = rt;
    const std::size_t wg = kernel_work_group(Program::codec, 0, args, caps());
    if (wg > caps().max_work_group_size || !quantize_fits_device(params, rt, caps())) continue;
    const ProgramSpec spec = program_spec(Program::codec, args, *runtime_);
    cl::Kernel& q = kernel(spec, kernels.at(0).name);
    const std::size_t kwg = cl_call("reading CL_KERNEL_WORK_GROUP_SIZE", [&] {
      return q.getWorkGroupInfo<CL_KERNEL_WORK_GROUP_SIZE>(device());
    });
    if (wg <= kwg)
      return codec_kernels_[key] = CodecKernels{rt,
                                                wg,
                                                kernel_work_group(Program::codec, 1, args, caps()),
                                                &q,
                                                &kernel(spec, kernels.at(1).name),
                                                &kernel(spec, kernels.at(2).name)};
  }
  throw Unsupported("quantize: " + caps().device_name + " cannot run the quantize kernel for " +
                    to_string(params.preset) + " with head_dim " + std::to_string(params.head_dim) +
                    " (work-group of " + std::to_string(quantize_work_group(params, last_rt)) +
                    " work-items and " +
                    std::to_string(quantize_local_bytes(params, last_rt, caps())) +
                    " bytes of local memory needed, device maximum " +
                    std::to_string(caps().max_work_group_size) + " and " +
                    std::to_string(caps().local_mem_bytes) + ")");
}

int OpenCLBackend::quantize_tokens_per_item(const CodecParams& params) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  return codec_kernels(params).tokens_per_item;
}

OpenCLBackend::RotateKernels& OpenCLBackend::rotate_kernels(int head_dim) {
  auto it = rotate_kernels_.find(head_dim);
  if (it != rotate_kernels_.end()) return it->second;
  ProgramArgs args;
  args.params.head_dim = head_dim;
  const ProgramSpec spec = program_spec(Program::rotate, args, *runtime_);
  const std::vector<KernelDef>& kernels = program_def(Program::rotate).kernels;
  return rotate_kernels_[head_dim] =
             RotateKernels{&kernel(spec, kernels.at(0).name), &kernel(spec, kernels.at(1).name),
                           &kernel(spec, kernels.at(2).name), &kernel(spec, kernels.at(3).name),
                           kernel_work_group(Program::rotate, 0, args, caps())};
}

void OpenCLBackend::rotate(const CodecParams& params, const Buffer& in, ElementType in_type,
                           std::size_t rows, Buffer& out, std::size_t out_row) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_rotate(params, in, in_type, rows, out, out_row);
  const std::size_t D = std::size_t(params.head_dim);
  check_u32(rows, "rotate: rows");
  check_u32(out_row, "rotate: out_row");
  if (rows == 0) return;
  const RotateKernels& rk = rotate_kernels(params.head_dim);
  cl::Kernel& k = in_type == ElementType::f16 ? *rk.f16 : *rk.f32;
  const std::size_t rows_per_group = rk.work_group * 8 / D;
  cl_call("rotate: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(in, "rotate: in"));
    k.setArg(1, cl_buffer(out, "rotate: out"));
    k.setArg(2, cl_uint(rows));
    k.setArg(3, cl_uint(out_row));
  });
  const std::size_t groups = (rows + rows_per_group - 1) / rows_per_group;
  launch(k, cl::NDRange(groups * rk.work_group), cl::NDRange(rk.work_group),
         "rotate: launching kvarn_rotate");
}

void OpenCLBackend::quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                             const std::vector<QuantizeJob>& jobs, Buffer& records) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  const RecordLayout l = check_quantize(params, k_rows, v_rows, jobs, records);
  if (jobs.empty()) return;
  static_assert(sizeof(QuantizeJob) == 2 * sizeof(cl_uint), "QuantizeJob is uploaded as uint2");
  cl::Buffer job_buf =
      upload(jobs.data(), jobs.size() * sizeof(QuantizeJob), "quantize: uploading jobs");
  launch_quantize(params, k_rows, v_rows, job_buf, jobs.size(), records, status_buffer(), 0);
  const std::uint32_t failed = take_status("quantize: reading the status word");
  if (failed != kNoFailure) {
    const std::size_t job = failed / 2;
    throw NonFiniteInput("quantize: the " + std::string(failed % 2 == 0 ? "key" : "value") +
                         " tile of jobs[" + std::to_string(job) + "] (rows " +
                         std::to_string(jobs[job].src_row) + ".." +
                         std::to_string(std::size_t(jobs[job].src_row) + l.group - 1) +
                         ") holds NaN, Inf or a value beyond the codec's bound " +
                         std::to_string(int(kMaxRotatedMagnitude)) + ", which cannot be quantized");
  }
}

void OpenCLBackend::launch_quantize(const CodecParams& params, const Buffer& k_rows,
                                    const Buffer& v_rows, const cl::Buffer& jobs,
                                    std::size_t num_jobs, Buffer& records, const cl::Buffer& status,
                                    std::size_t word) {
  const CodecKernels& ck = codec_kernels(params);
  cl::Kernel& k = *ck.quantize;
  check_u32(word, "quantize: status word");
  cl_call("quantize: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(k_rows, "quantize: k_rows"));
    k.setArg(1, cl_buffer(v_rows, "quantize: v_rows"));
    k.setArg(2, jobs);
    k.setArg(3, cl_buffer(records, "quantize: records"));
    k.setArg(4, cl_int(params.sinkhorn_iters));
    k.setArg(5, status);
    k.setArg(6, cl_uint(word));
  });
  const std::size_t wg = ck.quantize_work_group;
  launch(k, cl::NDRange(wg * num_jobs, 2), cl::NDRange(wg, 1),
         "quantize: launching kvarn_quantize");
}

void OpenCLBackend::dequantize(const CodecParams& params, const Buffer& records,
                               const std::vector<std::uint32_t>& record_ids, Frame frame,
                               Buffer& k_out, Buffer& v_out) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_dequantize(params, records, record_ids, k_out, v_out);
  if (record_ids.empty()) return;
  const CodecKernels& ck = codec_kernels(params);
  cl::Kernel& k = frame == Frame::rotated ? *ck.dequantize_rotated : *ck.dequantize_original;
  cl::Buffer ids = upload(record_ids.data(), record_ids.size() * sizeof(std::uint32_t),
                          "dequantize: uploading record ids");
  cl::Buffer& status = status_buffer();
  cl_call("dequantize: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(records, "dequantize: records"));
    k.setArg(1, ids);
    k.setArg(2, cl_buffer(k_out, "dequantize: k_out"));
    k.setArg(3, cl_buffer(v_out, "dequantize: v_out"));
    k.setArg(4, status);
  });
  const std::size_t items = dequantize_items_per_tile(params) * record_ids.size();
  check_u32(items, "dequantize: work-items (record_ids.size() x (G/8) x (D/8))");
  launch(k, cl::NDRange(items, 2), cl::NDRange(ck.dequantize_work_group, 1),
         "dequantize: launching kvarn_dequantize");
  const std::uint32_t failed = take_status("dequantize: reading the status word");
  if (failed != kNoFailure) {
    const std::size_t i = failed / 2;
    throw CorruptRecord("dequantize: record " + std::to_string(record_ids[i]) + " (record_ids[" +
                        std::to_string(i) + "]) has a non-finite or negative " +
                        (failed % 2 == 0 ? "key" : "value") + " scale");
  }
}

std::unique_ptr<OpenCLBackend> make_opencl_backend_on(const FoundDevice& found) {
  std::shared_ptr<DeviceRuntime> rt = DeviceRuntime::for_device(found);
  cl::CommandQueue queue = cl_call(
      "creating an OpenCL command queue on " + found.entry.caps.device_name,
      [&] { return cl::CommandQueue(rt->context(), rt->device(), CL_QUEUE_PROFILING_ENABLE); });
  return std::make_unique<OpenCLBackend>(std::move(rt), std::move(queue));
}

}  // namespace kvarn_cl::opencl
