// Batched decoding of records into fp16 rows (SPEC §2.4 decode formulas), in the rotated frame
// or rotated back to the original frame. Needs common.cl.
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
// - Scale vectors: 8 entries of each per work-item, three 16-byte loads (L1 hits after the first
//   work-item of a tile). Their NaN/Inf check folds into those registers (isfinite), and only a
//   work-item that finds one touches the status word.
// - The original frame needs the FWHT across a row of D channels held by D/8 work-items: one
//   row of D floats per token-block of the work-group in local memory (DQ_WG·8 floats), one
//   token of the 8 at a time (fwht_row_wide: the rotate kernel's butterflies, float4 local I/O).
// Decoding is exactly the CPU's expressions (no fma contraction, common.cl), so the results are
// bit-identical to kvarn_cl::dequantize_tiles.
//
// Launch: local size DQ_WG, global (DQ_BLOCKS * ids, 2).

#define DQ_WG 64
#define DQ_BX (KV_D / 8)                 // channel blocks per row
#define DQ_BLOCKS ((KV_G / 8) * DQ_BX)   // work-items per tile half
#define DQ_ROWS_WG (DQ_WG / DQ_BX)       // token blocks of one work-group (original frame)
#define DQ_KMASK ((1u << KV_KB) - 1u)
#define DQ_VMASK ((1u << KV_VB) - 1u)

#if (DQ_BLOCKS % DQ_WG) != 0 || (DQ_WG % DQ_BX) != 0
#error "dequantize.cl: unsupported geometry"
#endif

// 8 codes of b bits (b = 2 or 4) starting at code `first` of a packed row: one 2- or 4-byte word
// (first is a multiple of 8, so the word is aligned).
inline uint load_code_word(__global const uchar* row, int first, int bits) {
  return bits == 4 ? *(__global const uint*)(row + first / 2)
                   : (uint)(*(__global const ushort*)(row + first / 4));
}

inline void dequantize_body(const int to_original, __global const uchar* records,
                            __global const uint* ids, __global half* k_out,
                            __global half* v_out, __global uint* status, __local float* rowbuf) {
  const uint gid = (uint)get_global_id(0);
  const uint item = gid / DQ_BLOCKS;
  const int b = (int)(gid % DQ_BLOCKS);
  const int x = b % DQ_BX;   // channels [8x, 8x+8)
  const int ty = b / DQ_BX;  // tokens [8ty, 8ty+8)
  const int is_k = get_group_id(1) == 0;
  __global const uchar* rec = records + (ulong)ids[item] * KV_RECORD_BYTES;

  // Per-channel (c0, c1) and per-token (t0, t1) scale vectors of this block.
  // K: c0 = s_col_K, c1 = zp_K, t0 = s_row_K.   V: c0 = s_col_V, t0 = s_row_V, t1 = zp_V.
  float c0[8], c1[8], t0[8], t1[8];
  unpack8(load_half8_wide((__global const uint4*)(rec + (is_k ? KV_OFF_S_COL_K : KV_OFF_S_COL_V)) + x), c0);
  unpack8(load_half8_wide((__global const uint4*)(rec + (is_k ? KV_OFF_ZP_K : KV_OFF_S_ROW_V)) +
                          (is_k ? x : ty)), is_k ? c1 : t0);
  unpack8(load_half8_wide((__global const uint4*)(rec + (is_k ? KV_OFF_S_ROW_K : KV_OFF_ZP_V)) + ty),
          is_k ? t0 : t1);
  bool finite = true;
  #pragma unroll
  for (int i = 0; i < 8; ++i) {
    if (is_k) {
      finite = finite && isfinite(c0[i]) && isfinite(c1[i]) && isfinite(t0[i]);
    } else {
      finite = finite && isfinite(c0[i]) && isfinite(t0[i]) && isfinite(t1[i]);
    }
  }
  if (!finite) atomic_min(status, item * 2u + (uint)(is_k ? 0 : 1));

  // Code words: K -> one word per channel (8 tokens); V -> one word per token (8 channels).
  uint words[8];
  #pragma unroll
  for (int n = 0; n < 8; ++n) {
    words[n] = is_k ? load_code_word(rec + KV_OFF_K_CODES + (ulong)(x * 8 + n) * KV_K_ROW_BYTES,
                                     ty * 8, KV_KB)
                    : load_code_word(rec + KV_OFF_V_CODES + (ulong)(ty * 8 + n) * KV_V_ROW_BYTES,
                                     x * 8, KV_VB);
  }

  __global uint4* out = (__global uint4*)((is_k ? k_out : v_out) +
                                          ((ulong)item * KV_G + (ulong)(ty * 8)) * KV_D) + x;
  #pragma unroll
  for (int j = 0; j < 8; ++j) {  // token 8ty + j
    float v[8];
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
    if (to_original) fwht_row_wide(v, rowbuf + (get_local_id(0) / DQ_BX) * KV_D, x);
    store_half8_wide(pack8(v), out + j * DQ_BX);
  }
}

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void kvarn_dequantize_rotated(__global const uchar* records, __global const uint* ids,
                              __global half* k_out, __global half* v_out, __global uint* status) {
  dequantize_body(0, records, ids, k_out, v_out, status, 0);
}

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void kvarn_dequantize_original(__global const uchar* records, __global const uint* ids,
                               __global half* k_out, __global half* v_out, __global uint* status) {
  __local float4 rowbuf4[DQ_ROWS_WG * KV_D / 4];  // float4: 16-byte aligned rows
  dequantize_body(1, records, ids, k_out, v_out, status, (__local float*)rowbuf4);
}
