// Backend::first_row_out_of_range in one launch (kernels/check_rows.cl): the cache's entry check
// of device-resident keys and values (docs/API.md, robustness).
#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {
std::int64_t OpenCLBackend::first_row_out_of_range(const Buffer& rows_buf, std::size_t rows,
                                                   int head_dim, float max_abs) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  if (head_dim <= 0 || head_dim % 8 != 0)
    return Backend::first_row_out_of_range(rows_buf, rows, head_dim, max_abs);
  if (rows == 0) return -1;
  check_range(rows_buf, 0, rows * std::size_t(head_dim) * 2, "first_row_out_of_range: rows_buf");
  if (rows >= kNoFailure)
    throw InvalidArgument("first_row_out_of_range: rows " + std::to_string(rows) +
                          " exceed 2^32 - 1");
  cl::Kernel& k = fixed_kernel(Program::check_rows, 0);
  cl::Buffer& status = status_buffer();
  cl_call("first_row_out_of_range: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(rows_buf, "first_row_out_of_range: rows_buf"));
    k.setArg(1, cl_uint(rows));
    k.setArg(2, cl_uint(head_dim));
    k.setArg(3, cl_float(max_abs));
    k.setArg(4, status);
  });
  const std::size_t wg = fixed_work_group(Program::check_rows, 0);
  const std::size_t items = rows * std::size_t(head_dim) / 8;
  const std::size_t global = (items + wg - 1) / wg * wg;
  launch(k, cl::NDRange(global), cl::NDRange(wg),
         "first_row_out_of_range: launching kvarn_check_rows");
  const std::uint32_t bad = take_status("first_row_out_of_range: reading the status word");
  return bad == kNoFailure ? -1 : std::int64_t(bad);
}

}  // namespace kvarn_cl::opencl
