// Range check of fp16 rows (Backend::first_row_out_of_range): the cache refuses device-resident
// keys and values that are NaN, Inf or beyond the codec's bound (format.hpp
// kMaxRotatedMagnitude) before it stores any of them, so no later attend or append can meet one.
// Each work-item checks 8 consecutive channels of one row (one 16-byte load, coalesced across the
// group); a work-item that finds a bad value writes its row into the status word with
// atomic_min, so the host learns the first bad row. The range test is written so that NaN fails.
// Launch: local (CK_WG), global (rows * row_len / 8 rounded up to CK_WG); row_len % 8 == 0.
#ifndef CK_WG
#error "check_rows.cl: CK_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif

__kernel __attribute__((reqd_work_group_size(CK_WG, 1, 1)))
void kvarn_check_rows(__global const half* rows, uint n_rows, uint row_len, float max_abs,
                      __global uint* status) {
  const ulong item = get_global_id(0);
  const uint chunks_per_row = row_len / 8;
  const ulong row = item / chunks_per_row;
  if (row >= n_rows) return;
  const float8 v = vload_half8(item, rows);  // channels 8·(item % chunks) .. +8 of row `row`
  const int8 ok = fabs(v) <= (float8)(max_abs);
  if (!all(ok)) atomic_min(status, (uint)row);
}
