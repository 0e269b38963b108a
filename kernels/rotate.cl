// Rotation of K/V/Q rows (SPEC §2.2): x·H with H the normalized Sylvester Hadamard matrix of
// order KV_D, computed in fp32 with the fast Walsh–Hadamard transform and rounded to fp16 (RTE).
// Needs common.cl and fwht_rows.cl (the row transform). Rows move as 16-byte words
// (load_half8_wide / store_half8_wide).
//
// Launch: local size ROT_WG, one work-group per ROT_ROWS rows, global = ceil(rows/ROT_ROWS)*ROT_WG.

#define ROT_WG 256
#define ROT_ROWS (ROT_WG / KV_D_BLOCKS)

inline void rotate_rows_body(__global const half* in_f16, __global const float* in_f32,
                             __global half* out, uint rows, uint out_row, __local float* rowbuf) {
  const int lid = (int)get_local_id(0);
  const int r = lid / KV_D_BLOCKS;
  const int x = lid % KV_D_BLOCKS;
  const ulong row = (ulong)get_group_id(0) * ROT_ROWS + (ulong)r;
  const bool valid = row < (ulong)rows;
  float v[8];
  if (valid) {
    const ulong at = row * KV_D + (ulong)(x * 8);
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
  fwht_put8(v, rowbuf, r, x);
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_rows_local(rowbuf, ROT_ROWS, lid, ROT_WG);
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_get8_scaled(v, rowbuf, r, x);
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
