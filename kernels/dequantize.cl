// Batched decoding of records into fp16 rows (SPEC §2.4 decode formulas), in the rotated frame
// or rotated back to the original frame. Needs common.cl.
//
// One launch for any list of record ids: work-group (i, 0) writes the G key rows of list entry i
// to rows [i*G, (i+1)*G) of k_out, (i, 1) the value rows to v_out.
// Bandwidth: every work-item stores 8 contiguous fp16 channels (16 B) and consecutive work-items
// store consecutive 16 B pieces of a row, so stores are fully coalesced. V codes are token-major
// like the output and are read straight from global memory (one 16- or 32-bit word per
// work-item, coalesced). K codes are channel-major (codes along tokens): they are staged into local
// memory with 16-byte loads, decoded channel-per-work-item and transposed through local memory.
//
// Launch: local size DQ_WG, global (DQ_WG * ids, 2).

#define DQ_WG 256
#define DQ_ROWS (DQ_WG / KV_D_BLOCKS)             // tokens per pass (2048 / D: 32, 16 or 8)
#define DQ_K_WORDS (KV_K_ROW_BYTES / 4)           // 32-bit words of one channel's K codes
#define DQ_K_STRIDE (DQ_K_WORDS + 1)              // padded: consecutive channels hit distinct banks
#define DQ_K_UINT4 (KV_D * KV_K_ROW_BYTES / 16)   // 16-byte loads of the K code block
#define DQ_KMASK ((1u << KV_KB) - 1u)
#define DQ_VMASK ((1u << KV_VB) - 1u)

#if (KV_K_ROW_BYTES % 16) != 0 || (DQ_ROWS % 8) != 0 || (KV_G % DQ_ROWS) != 0
#error "dequantize.cl: unsupported geometry"
#endif

inline void dequantize_body(const int to_original, __global const uchar* records,
                            __global const uint* ids, __global half* k_out,
                            __global half* v_out, __global uint* status,
                            __local uint* kcodes, __local float4* rowbuf4,
                            __local float* vec_d0, __local float* vec_d1,
                            __local float* vec_t0, __local float* vec_t1) {
  __local float* rowbuf = (__local float*)rowbuf4;
  const uint item = get_group_id(0);
  const int is_k = get_group_id(1) == 0;
  const int lid = (int)get_local_id(0);
  __global const uchar* rec = records + (ulong)ids[item] * KV_RECORD_BYTES;

  // Scale vectors as fp32. K: d0 = s_col_K, d1 = zp_K, t0 = s_row_K.
  // V: d0 = s_col_V, t0 = s_row_V, t1 = zp_V.
  bool finite = true;
  for (int k = lid; k < KV_D; k += DQ_WG) {
    const float a = vload_half(k, (__global const half*)(rec + (is_k ? KV_OFF_S_COL_K : KV_OFF_S_COL_V)));
    const float b = is_k ? vload_half(k, (__global const half*)(rec + KV_OFF_ZP_K)) : 0.0f;
    vec_d0[k] = a;
    vec_d1[k] = b;
    finite = finite && isfinite(a) && isfinite(b);
  }
  for (int k = lid; k < KV_G; k += DQ_WG) {
    const float a = vload_half(k, (__global const half*)(rec + (is_k ? KV_OFF_S_ROW_K : KV_OFF_S_ROW_V)));
    const float b = is_k ? 0.0f : vload_half(k, (__global const half*)(rec + KV_OFF_ZP_V));
    vec_t0[k] = a;
    vec_t1[k] = b;
    finite = finite && isfinite(a) && isfinite(b);
  }
  if (!finite) atomic_min(status, item * 2u + (uint)(is_k ? 0 : 1));
  if (is_k) {
    __global const uint4* src = (__global const uint4*)(rec + KV_OFF_K_CODES);
    for (int k = lid; k < DQ_K_UINT4; k += DQ_WG) {
      const uint4 w = src[k];
      const int word = k * 4;  // DQ_K_WORDS is a multiple of 4: the 4 words share one channel
      __local uint* dst = kcodes + (word / DQ_K_WORDS) * DQ_K_STRIDE + (word % DQ_K_WORDS);
      dst[0] = w.x; dst[1] = w.y; dst[2] = w.z; dst[3] = w.w;
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);

  const int r = lid / KV_D_BLOCKS;  // row of this pass (output mapping)
  const int x = lid % KV_D_BLOCKS;  // 8-channel block
  __global half* out = is_k ? k_out : v_out;
  for (int pass = 0; pass < KV_G / DQ_ROWS; ++pass) {
    if (is_k) {
      // channel d, tokens tok0 .. tok0+7: one word holds them (8*KB <= 32 bits)
      const int d = lid % KV_D;
      const int c = lid / KV_D;
      const int tok0 = pass * DQ_ROWS + c * 8;
      const uint bit = (uint)(tok0 * KV_KB);
      const uint word = kcodes[d * DQ_K_STRIDE + (int)(bit / 32u)] >> (bit % 32u);
      const float sc = vec_d0[d];
      const float zp = vec_d1[d];
      #pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float q = code_to_float((word >> (j * KV_KB)) & DQ_KMASK);
        rowbuf[(c * 8 + j) * KV_D + d] = (q * sc + zp) * vec_t0[tok0 + j];
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int t = pass * DQ_ROWS + r;
    float v[8];
    if (is_k) {
      const float4 a = rowbuf4[(r * KV_D + x * 8) / 4];
      const float4 b = rowbuf4[(r * KV_D + x * 8) / 4 + 1];
      v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
      v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
      __global const uchar* row = rec + KV_OFF_V_CODES + (ulong)t * KV_V_ROW_BYTES;
#if KV_VB == 4
      const uint word = *(__global const uint*)(row + x * 4);
#else
      const uint word = (uint)(*(__global const ushort*)(row + x * 2));
#endif
      const float sr = vec_t0[t];
      const float zp = vec_t1[t];
      #pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float q = code_to_float((word >> (i * KV_VB)) & DQ_VMASK);
        v[i] = (q * sr + zp) * vec_d0[x * 8 + i];
      }
    }
    if (to_original) fwht_row(v, rowbuf + r * KV_D, x);
    vstore_half8_rte(pack8(v), 0, out + ((ulong)item * KV_G + (ulong)t) * KV_D + (ulong)(x * 8));
    barrier(CLK_LOCAL_MEM_FENCE);  // rowbuf is rewritten by the next pass
  }
}

#define DQ_LOCALS                                             \
  __local uint kcodes[KV_D * DQ_K_STRIDE];                   \
  __local float4 rowbuf4[DQ_ROWS * KV_D / 4];                \
  __local float vec_d0[KV_D], vec_d1[KV_D], vec_t0[KV_G], vec_t1[KV_G];

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void kvarn_dequantize_rotated(__global const uchar* records, __global const uint* ids,
                              __global half* k_out, __global half* v_out, __global uint* status) {
  DQ_LOCALS
  dequantize_body(0, records, ids, k_out, v_out, status, kcodes, rowbuf4, vec_d0, vec_d1, vec_t0,
                  vec_t1);
}

__kernel __attribute__((reqd_work_group_size(DQ_WG, 1, 1)))
void kvarn_dequantize_original(__global const uchar* records, __global const uint* ids,
                               __global half* k_out, __global half* v_out, __global uint* status) {
  DQ_LOCALS
  dequantize_body(1, records, ids, k_out, v_out, status, kcodes, rowbuf4, vec_d0, vec_d1, vec_t0,
                  vec_t1);
}
