// Backend::copy_rows in one launch (kernels/copy_rows.cl): the cache calls it on every append to
// scatter new rows into its sink/tail pools, and to gather rows for the materialize path.
#include <algorithm>
#include <vector>

#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

void OpenCLBackend::copy_rows(const Buffer& src, Buffer& dst, const std::vector<RowRun>& runs,
                              std::size_t row_bytes) {
  const std::lock_guard<std::recursive_mutex> lock(call_mutex_);  // see opencl_backend.hpp
  check_copy_rows(src, dst, runs, row_bytes);
  // The kernel moves 16-byte words; other row sizes (never used by the cache, whose rows are
  // D >= 64 fp16 channels) take the per-run copies of the base class.
  if (row_bytes == 0 || row_bytes % 16 != 0) {
    Backend::copy_rows(src, dst, runs, row_bytes);
    return;
  }
  const std::uint64_t words_per_row = row_bytes / 16;
  const std::size_t wg = fixed_work_group(Program::copy_rows, 0);
  const std::uint64_t chunk_words = wg;
  // {src_row, dst_row, rows, first_chunk} per non-empty run (copy_rows.cl).
  std::vector<cl_ulong> table;
  std::uint64_t chunks = 0;
  for (const RowRun& r : runs) {
    if (r.rows == 0) continue;
    table.insert(table.end(), {r.src_row, r.dst_row, r.rows, chunks});
    chunks += (r.rows * words_per_row + chunk_words - 1) / chunk_words;
  }
  if (chunks == 0) return;
  const int n = int(table.size() / 4);
  cl::Buffer runs_buf =
      upload(table.data(), table.size() * sizeof(cl_ulong), "copy_rows: uploading runs");
  cl::Kernel& k = fixed_kernel(Program::copy_rows, 0);
  cl_call("copy_rows: setting kernel arguments", [&] {
    k.setArg(0, cl_buffer(src, "copy_rows: src"));
    k.setArg(1, cl_buffer(dst, "copy_rows: dst"));
    k.setArg(2, runs_buf);
    k.setArg(3, cl_int(n));
    k.setArg(4, cl_ulong(words_per_row));
  });
  launch(k, cl::NDRange(std::size_t(chunks) * wg), cl::NDRange(wg),
         "copy_rows: launching kvarn_copy_rows");
}

}  // namespace kvarn_cl::opencl
