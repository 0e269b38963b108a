// Batched decoding of records into fp16 rows (SPEC §2.4 decode formulas), in the rotated frame
// or rotated back to the original frame. Needs common.cl and fwht_rows.cl (the row transform).
//
// One launch for any list of record ids. Each tile half (K or V of one list entry) is cut into
// 8-token × 8-channel blocks, one per work-item: DQ_BLOCKS = (G/8)·(D/8) work-items per tile half.
// Work-item (entry i, block b) of dimension 1 = 0 writes key rows [i*G + 8ty, +8) × channels
// [8x, 8x+8) of k_out, dimension 1 = 1 the same block of v_out.
//
// Why this shape (the kernel is bound by the ~1 GB of fp16 it writes per 16K records):
// - Stores: every work-item writes 8 rows × 16 B, each as one 16-byte store (store_half8_wide);
//   consecutive work-items (x fastest) write consecutive 16 B of one row, so every store
//   instruction of a warp writes whole 128-byte lines.
// - No local memory and no barrier in the rotated frame: the 8×8 block covers whole code words
//   of both layouts. K codes are channel-major (codes along tokens): 8 tokens of one channel are
//   one KB-byte word, so 8 word loads give the block. V codes are token-major: 8 channels of one
//   token are one VB-byte word. So no transpose through local memory is needed, nothing limits
//   occupancy, and the per-tile code bytes (8 KB) are re-read only from L1/L2.
// - K or V is uniform per work-group (dimension 1), and the kernels branch on it once, calling
//   the block code with a literal is_k: every private array then has constant indices and a
//   fixed role, so it stays in registers (selecting one private array or another by a run-time
//   flag forces them into stack memory).
// - Scale vectors: 8 entries of each per work-item, three 16-byte loads (L1 hits after the first
//   work-item of a tile). Their check (NaN/Inf anywhere, a negative step or column scale) folds
//   into those registers, and only a work-item that finds one touches the status word.
// - The original frame runs the row FWHT of fwht_rows.cl over the group's DQ_ROWS_WG·8 whole
//   rows: the three low stages in registers, the rest in one exchange through local memory (two
//   barriers per work-item in all, not two per stage and token).
// Decoding is exactly the CPU's expressions (no fma contraction, common.cl), so the results are
// bit-identical to kvarn_cl::dequantize_tiles.
//
// Launch: local size DQ_WG, global (DQ_BLOCKS * ids, 2).

#ifndef DQ_WG
#error "dequantize.cl: DQ_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif
#ifndef DQ_BLOCKS
#error "dequantize.cl: DQ_BLOCKS (work-items per tile half) must be defined by the host (program_table.cpp)"
#endif
#define DQ_BX (KV_D / 8)                 // channel blocks per row
#if DQ_BLOCKS != (KV_G / 8) * DQ_BX
#error "dequantize.cl: the host's DQ_BLOCKS is not one item per 8 x 8 block of a tile half"
#endif
#define DQ_ROWS_WG (DQ_WG / DQ_BX)       // token blocks of one work-group (original frame)
#define DQ_KMASK ((1u << KV_KB) - 1u)
#define DQ_VMASK ((1u << KV_VB) - 1u)

#if (DQ_BLOCKS % DQ_WG) != 0 || (DQ_WG % DQ_BX) != 0
#error "dequantize.cl: unsupported geometry"
#endif

#define DQ_INLINE inline __attribute__((always_inline))

// 8 codes of b bits (b = 2 or 4) starting at code `first` of a packed row: one 2- or 4-byte word
// (first is a multiple of 8, so the word is aligned).
inline uint load_code_word(__global const uchar* row, int first, int bits) {
  return bits == 4 ? *(__global const uint*)(row + first / 2)
                   : (uint)(*(__global const ushort*)(row + first / 4));
}

// What one work-item needs to decode its block: the per-channel (c0, c1) and per-token (t0, t1)
// scale vectors and the 8 code words.
// K: c0 = s_col_K, c1 = zp_K, t0 = s_row_K (t1 unused); words[n] = channel 8x+n, 8 tokens.
// V: c0 = s_col_V, t0 = s_row_V, t1 = zp_V (c1 unused); words[n] = token 8ty+n, 8 channels.
// is_k must be a literal at every call site.
DQ_INLINE void load_block(const int is_k, __global const uchar* rec, int x, int ty, uint item,
                          __global uint* status, float c0[8], float c1[8], float t0[8],
                          float t1[8], uint words[8]) {
  bool finite = true;
  if (is_k) {
    unpack8(load_half8_wide((__global const uint4*)(rec + KV_OFF_S_COL_K) + x), c0);
    unpack8(load_half8_wide((__global const uint4*)(rec + KV_OFF_ZP_K) + x), c1);
    unpack8(load_half8_wide((__global const uint4*)(rec + KV_OFF_S_ROW_K) + ty), t0);
    #pragma unroll
    for (int i = 0; i < 8; ++i) {
      t1[i] = 0.0f;
      finite = finite && isfinite(c0[i]) && isfinite(c1[i]) && isfinite(t0[i]) &&
               !(c0[i] < 0.0f) && !(t0[i] < 0.0f);  // step and column scales are not negative
    }
    #pragma unroll
    for (int n = 0; n < 8; ++n)
      words[n] = load_code_word(rec + KV_OFF_K_CODES + (ulong)(x * 8 + n) * KV_K_ROW_BYTES,
                                ty * 8, KV_KB);
  } else {
    unpack8(load_half8_wide((__global const uint4*)(rec + KV_OFF_S_COL_V) + x), c0);
    unpack8(load_half8_wide((__global const uint4*)(rec + KV_OFF_S_ROW_V) + ty), t0);
    unpack8(load_half8_wide((__global const uint4*)(rec + KV_OFF_ZP_V) + ty), t1);
    #pragma unroll
    for (int i = 0; i < 8; ++i) {
      c1[i] = 0.0f;
      finite = finite && isfinite(c0[i]) && isfinite(t0[i]) && isfinite(t1[i]) &&
               !(c0[i] < 0.0f) && !(t0[i] < 0.0f);
    }
    #pragma unroll
    for (int n = 0; n < 8; ++n)
      words[n] = load_code_word(rec + KV_OFF_V_CODES + (ulong)(ty * 8 + n) * KV_V_ROW_BYTES,
                                x * 8, KV_VB);
  }
  if (!finite) atomic_min(status, item * 2u + (uint)(is_k ? 0 : 1));
}

// Token 8ty + j of the block, channels 8x .. 8x+7, in the rotated frame (fp32).
DQ_INLINE void decode_token(const int is_k, int j, const float c0[8], const float c1[8],
                            const float t0[8], const float t1[8], const uint words[8],
                            float v[8]) {
  #pragma unroll
  for (int i = 0; i < 8; ++i) {  // channel 8x + i
    if (is_k) {
      const float q = code_to_float((words[i] >> (j * KV_KB)) & DQ_KMASK);
      v[i] = (q * c0[i] + c1[i]) * t0[j];
    } else {
      const float q = code_to_float((words[j] >> (i * KV_VB)) & DQ_VMASK);
      v[i] = (q * t0[j] + t1[j]) * c0[i];
    }
  }
}

// A finite record can decode beyond the fp16 range; saturate like the CPU's
// floats_to_halves_saturated so the output is finite and bit-identical to it.
inline float8 saturate8(float8 v) { return clamp(v, -65504.0f, 65504.0f); }

// Output rows of this work-item's block: row j at out[j * DQ_BX].
inline __global uint4* block_out(__global half* base, uint item, int x, int ty) {
  return (__global uint4*)(base + ((ulong)item * KV_G + (ulong)(ty * 8)) * KV_D) + x;
}

DQ_INLINE void dequantize_rotated_half(const int is_k, __global const uchar* records,
                                       __global const uint* ids, __global half* out_base,
                                       __global uint* status) {
  const uint gid = (uint)get_global_id(0);
  const uint item = gid / DQ_BLOCKS;
  const int b = (int)(gid % DQ_BLOCKS);
  const int x = b % DQ_BX;   // channels [8x, 8x+8)
  const int ty = b / DQ_BX;  // tokens [8ty, 8ty+8)
  __global const uchar* rec = records + (ulong)ids[item] * KV_RECORD_BYTES;
  float c0[8], c1[8], t0[8], t1[8];
  uint words[8];
  load_block(is_k, rec, x, ty, item, status, c0, c1, t0, t1, words);
  __global uint4* out = block_out(out_base, item, x, ty);
  #pragma unroll
  for (int j = 0; j < 8; ++j) {
    float v[8];
    decode_token(is_k, j, c0, c1, t0, t1, words, v);
    store_half8_wide(saturate8(pack8(v)), out + j * DQ_BX);
  }
}

// The group's DQ_ROWS_WG·8 token rows are whole rows (a group covers DQ_WG consecutive blocks
// and DQ_WG is a multiple of DQ_BX), so they are transformed together in `buf`.
DQ_INLINE void dequantize_original_half(const int is_k, __global const uchar* records,
                                        __global const uint* ids, __global half* out_base,
                                        __global uint* status, __local float* buf) {
  const uint gid = (uint)get_global_id(0);
  const uint item = gid / DQ_BLOCKS;
  const int b = (int)(gid % DQ_BLOCKS);
  const int x = b % DQ_BX;
  const int ty = b / DQ_BX;
  const int lid = (int)get_local_id(0);
  const int lrow = (lid / DQ_BX) * 8;  // this block's first row in buf
  __global const uchar* rec = records + (ulong)ids[item] * KV_RECORD_BYTES;
  {
    float c0[8], c1[8], t0[8], t1[8];
    uint words[8];
    load_block(is_k, rec, x, ty, item, status, c0, c1, t0, t1, words);
    #pragma unroll
    for (int j = 0; j < 8; ++j) {
      float v[8];
      decode_token(is_k, j, c0, c1, t0, t1, words, v);
      fwht8(v);
      fwht_put8(v, buf, lrow + j, x);
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_rows_local(buf, DQ_ROWS_WG * 8, lid, DQ_WG);
  barrier(CLK_LOCAL_MEM_FENCE);
  __global uint4* out = block_out(out_base, item, x, ty);
  #pragma unroll
  for (int j = 0; j < 8; ++j) {
    float v[8];
    fwht_get8_scaled(v, buf, lrow + j, x);
    store_half8_wide(saturate8(pack8(v)), out + j * DQ_BX);
  }
}

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void kvarn_dequantize_rotated(__global const uchar* records, __global const uint* ids,
                              __global half* k_out, __global half* v_out, __global uint* status) {
  if (get_group_id(1) == 0) dequantize_rotated_half(1, records, ids, k_out, status);
  else dequantize_rotated_half(0, records, ids, v_out, status);
}

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void kvarn_dequantize_original(__global const uchar* records, __global const uint* ids,
                               __global half* k_out, __global half* v_out, __global uint* status) {
  __local float4 buf4[DQ_ROWS_WG * 8 * FW_STRIDE / 4];  // float4: 16-byte aligned rows
  // The branch is uniform per work-group, so the barriers inside are reached by all its items.
  if (get_group_id(1) == 0) dequantize_original_half(1, records, ids, k_out, status, (__local float*)buf4);
  else dequantize_original_half(0, records, ids, v_out, status, (__local float*)buf4);
}

