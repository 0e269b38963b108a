// Rotation of K/V/Q rows (SPEC §2.2): x·H with H the normalized Sylvester Hadamard matrix of
// order KV_D, computed in fp32 with the fast Walsh–Hadamard transform and rounded to fp16 (RTE).
// Needs common.cl and fwht_rows.cl (the row transform). Rows move as 16-byte words
// (load_half8_wide / store_half8_wide).
//
// Launch: local size ROT_WG, one work-group per ROT_ROWS rows, global = ceil(rows/ROT_ROWS)*ROT_WG.

#ifndef ROT_WG
#error "rotate.cl: ROT_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif
#if (ROT_WG % KV_D_BLOCKS) != 0
#error "rotate.cl: ROT_WG must hold whole rows"
#endif
#define ROT_ROWS (ROT_WG / KV_D_BLOCKS)

// The rotation every kernel of this file shares: this work-item's 8 channels [8x, 8x+8) of row
// `*row` (zeros past `rows`), transformed with the group's other rows through rowbuf; v receives
// the rotated fp32 values (not yet rounded). Every work-item of the group calls it (barriers).
inline void rotate_group_rows(__global const half* in_f16, __global const float* in_f32,
                              uint rows, __local float* rowbuf, float v[8], ulong* row,
                              bool* valid, int* x) {
  const int lid = (int)get_local_id(0);
  const int r = lid / KV_D_BLOCKS;
  *x = lid % KV_D_BLOCKS;
  *row = (ulong)get_group_id(0) * ROT_ROWS + (ulong)r;
  *valid = *row < (ulong)rows;
  if (*valid) {
    const ulong at = *row * KV_D + (ulong)(*x * 8);
    if (in_f16) {
      unpack8(load_half8_wide((__global const uint4*)(in_f16 + at)), v);
    } else {
      unpack8(vload8(0, in_f32 + at), v);
    }
  } else {
    #pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = 0.0f;
  }
  fwht8(v);
  fwht_put8(v, rowbuf, r, *x);
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_rows_local(rowbuf, ROT_ROWS, lid, ROT_WG);
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_get8_scaled(v, rowbuf, r, *x);
}

inline void rotate_rows_body(__global const half* in_f16, __global const float* in_f32,
                             __global half* out, uint rows, uint out_row, __local float* rowbuf) {
  float v[8];
  ulong row;
  bool valid;
  int x;
  rotate_group_rows(in_f16, in_f32, rows, rowbuf, v, &row, &valid, &x);
  if (valid) store_half8_wide(pack8(v), (__global uint4*)(out + ((ulong)out_row + row) * KV_D + (ulong)(x * 8)));
}

__kernel __attribute__((reqd_work_group_size(ROT_WG, 1, 1)))
void kvarn_rotate_f16(__global const half* in, __global half* out, uint rows, uint out_row) {
  __local float4 rowbuf[ROT_ROWS * FW_STRIDE / 4];  // float4: 16-byte aligned rows
  rotate_rows_body(in, 0, out, rows, out_row, (__local float*)rowbuf);
}

__kernel __attribute__((reqd_work_group_size(ROT_WG, 1, 1)))
void kvarn_rotate_f32(__global const float* in, __global half* out, uint rows, uint out_row) {
  __local float4 rowbuf[ROT_ROWS * FW_STRIDE / 4];
  rotate_rows_body(0, in, out, rows, out_row, (__local float*)rowbuf);
}

// The decode step's append (Backend::append_rows): each input row rotated as above, checked, and
// stored at its own destination: dest[row] >= 0 is a row of the tail pool, dest[row] < 0 the row
// -(dest[row] + 1) of the sink pool. get_global_id(1) is 0 for K (k_in -> sink_k/tail_k), 1 for
// V. One launch carries every (sequence, KV head) row of a layer's step, so appending a token
// costs one kernel instead of rotate + check + read-back + copies. A rotated value that is NaN,
// Inf or above max_abs (the codec's bound) writes 2·row + part into status[status_word] with
// atomic_min; the row is stored anyway: the step drops it when it reads the status word.
inline void append_rows_body(__global const half* in_f16, __global const float* in_f32,
                             __global const int* dest, uint rows, __global half* sink,
                             __global half* tail, float max_abs, __global uint* status,
                             uint part, __local float* rowbuf) {
  float v[8];
  ulong row;
  bool valid;
  int x;
  rotate_group_rows(in_f16, in_f32, rows, rowbuf, v, &row, &valid, &x);
  if (!valid) return;
  // The check reads the fp16 values that are stored (what the quantizer will see): NaN fails the
  // comparison, Inf and values above the bound exceed it.
  uint4 raw;
  vstore_half8_rte(pack8(v), 0, (__private half*)&raw);
  const int8 ok = fabs(vload_half8(0, (const __private half*)&raw)) <= (float8)(max_abs);
  if (!all(ok)) atomic_min(status, (uint)row * 2u + part);
  const int d = dest[row];
  __global half* pool = d >= 0 ? tail : sink;
  const ulong drow = d >= 0 ? (ulong)d : (ulong)(-(d + 1));
  *(__global uint4*)(pool + drow * KV_D + (ulong)(x * 8)) = raw;
}

__kernel __attribute__((reqd_work_group_size(ROT_WG, 1, 1)))
void kvarn_append_rows_f16(__global const half* k_in, __global const half* v_in,
                           __global const int* dest, uint rows, __global half* sink_k,
                           __global half* tail_k, __global half* sink_v, __global half* tail_v,
                           float max_abs, __global uint* status, uint status_word) {
  __local float4 rowbuf[ROT_ROWS * FW_STRIDE / 4];
  const uint part = (uint)get_global_id(1);
  append_rows_body(part ? v_in : k_in, 0, dest, rows, part ? sink_v : sink_k,
                   part ? tail_v : tail_k, max_abs, status + status_word, part,
                   (__local float*)rowbuf);
}

__kernel __attribute__((reqd_work_group_size(ROT_WG, 1, 1)))
void kvarn_append_rows_f32(__global const float* k_in, __global const float* v_in,
                           __global const int* dest, uint rows, __global half* sink_k,
                           __global half* tail_k, __global half* sink_v, __global half* tail_v,
                           float max_abs, __global uint* status, uint status_word) {
  __local float4 rowbuf[ROT_ROWS * FW_STRIDE / 4];
  const uint part = (uint)get_global_id(1);
  append_rows_body(0, part ? v_in : k_in, dest, rows, part ? sink_v : sink_k,
                   part ? tail_v : tail_k, max_abs, status + status_word, part,
                   (__local float*)rowbuf);
}
