// The decode step's calls on the OpenCL device (KVCache::begin_step, docs/API.md): each one only
// enqueues. The step uploads its index data once and reads its status words once, at its
// synchronization point; nothing here reads back or waits, so a layer's append and attend cost
// the host a few enqueues.
#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

void OpenCLBackend::append_rows(const AppendRowsArgs& a) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_append_rows(a);
  if (a.rows == 0) return;
  const RotateKernels& rk = rotate_kernels(a.head_dim);
  cl::Kernel& k = a.in_type == ElementType::f16 ? *rk.append_f16 : *rk.append_f32;
  cl_call("append_rows: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(*a.k, "append_rows: k"));
    k.setArg(1, cl_buffer(*a.v, "append_rows: v"));
    k.setArg(2, cl_buffer(*a.destinations, "append_rows: destinations"));
    k.setArg(3, cl_uint(a.rows));
    k.setArg(4, cl_buffer(*a.sink_k, "append_rows: sink_k"));
    k.setArg(5, cl_buffer(*a.tail_k, "append_rows: tail_k"));
    k.setArg(6, cl_buffer(*a.sink_v, "append_rows: sink_v"));
    k.setArg(7, cl_buffer(*a.tail_v, "append_rows: tail_v"));
    k.setArg(8, cl_float(kMaxRotatedMagnitude));
    k.setArg(9, cl_buffer(*a.status.words, "append_rows: status"));
    k.setArg(10, cl_uint(a.status.index));
  });
  const std::size_t rows_per_group = rk.work_group * 8 / std::size_t(a.head_dim);
  const std::size_t groups = (a.rows + rows_per_group - 1) / rows_per_group;
  launch(k, cl::NDRange(groups * rk.work_group, 2), cl::NDRange(rk.work_group, 1),
         "append_rows: launching kvarn_append_rows");
}

void OpenCLBackend::quantize_deferred(const CodecParams& params, const Buffer& k_rows,
                                      const Buffer& v_rows, const Buffer& jobs,
                                      const std::vector<QuantizeJob>& host_jobs, Buffer& records,
                                      StatusWord status) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_quantize(params, k_rows, v_rows, host_jobs, records);
  check_status_word(status, "quantize_deferred");
  check_range(jobs, 0, host_jobs.size() * sizeof(QuantizeJob), "quantize_deferred: jobs");
  if (host_jobs.empty()) return;
  launch_quantize(params, k_rows, v_rows, cl_buffer(jobs, "quantize_deferred: jobs"),
                  host_jobs.size(), records, cl_buffer(*status.words, "quantize_deferred: status"),
                  status.index);
}

void OpenCLBackend::wait_for(const std::vector<_cl_event*>& events) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  if (events.empty()) return;
  for (std::size_t i = 0; i < events.size(); ++i)
    if (events[i] == nullptr)
      throw InvalidArgument("wait_for: events[" + std::to_string(i) + "] is null");
  // A marker with a wait list: on this in-order queue, everything enqueued after it starts only
  // once the events completed, and the host does not wait.
  const cl_int err =
      clEnqueueMarkerWithWaitList(queue_(), cl_uint(events.size()), events.data(), nullptr);
  if (err != CL_SUCCESS)
    throw_cl_error("wait_for: enqueueing a marker that waits for " + std::to_string(events.size()) +
                       " event(s)",
                   "clEnqueueMarkerWithWaitList", err);
}

_cl_event* OpenCLBackend::enqueue_marker() {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  cl_event ev = nullptr;
  const cl_int err = clEnqueueMarkerWithWaitList(queue_(), 0, nullptr, &ev);
  if (err != CL_SUCCESS)
    throw_cl_error("enqueue_marker: enqueueing a marker", "clEnqueueMarkerWithWaitList", err);
  return ev;
}

}  // namespace kvarn_cl::opencl
