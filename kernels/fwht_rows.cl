// The FWHT of whole rows of KV_D channels that a work-group holds 8 contiguous channels per
// work-item: the row transform of rotate.cl (rotation) and dequantize.cl (back to the original
// frame). Needs common.cl. Same butterflies in the same order as kvarn_cl::fwht_inplace, so
// results are bitwise the CPU codec's.

// Stages h = 1, 2, 4 of the radix-2 fast Walsh–Hadamard transform on 8 contiguous channels, in
// registers.
inline void fwht8(float v[8]) {
  #pragma unroll
  for (int h = 1; h < 8; h <<= 1) {
    #pragma unroll
    for (int i = 0; i < 8; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const float a = v[j];
        const float b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
}

// Row stride of the local buffers of fwht_rows_local: KV_D floats plus 8 of padding. The stride is
// then 8 (mod 32) floats, so the 32 transforms a warp runs at once (8 offsets i of 4 rows) hit 32
// different banks, and rows stay 16-byte aligned for float4 accesses.
#define FW_STRIDE (KV_D + 8)

// log2(KV_D / 8): the stages fwht_rows_local runs.
#if KV_D_BLOCKS == 8
#define FW_STAGES 3
#elif KV_D_BLOCKS == 16
#define FW_STAGES 4
#elif KV_D_BLOCKS == 32
#define FW_STAGES 5
#else
#error "fwht_rows.cl: head_dim must be 64, 128 or 256"
#endif

// Whole-row FWHT with two barriers instead of one per stage (a stage per barrier would need
// log2(D/8) + 2).
// Each work-item holds 8 contiguous channels [8x, 8x+8) of one row. Stages h = 1, 2, 4 run in its
// registers (fwht8). The remaining stages h = 8 .. KV_D/2 only combine channels with the same
// offset i = c mod 8: for each (row, i) they are an independent KV_D/8-point transform of the
// values at channels 8x + i, x = 0 .. KV_D/8 - 1 (stride 8·s in channels = stride s in x). So
// one exchange through local memory gives every such transform to one work-item, which runs all
// its stages in registers, and one exchange back returns the 8 channels. Every butterfly sees the
// same operands as in kvarn_cl::fwht_inplace (stride 1, 2, 4, ... then the scale), so the result is
// bitwise the same.
//
// Call pattern (every work-item of the group; the buffer is `rows` rows of FW_STRIDE floats):
//   fwht8(v); fwht_put8(v, buf, row, x); barrier; fwht_rows_local(buf, rows, lid, items);
//   barrier; fwht_get8_scaled(v, buf, row, x)
inline void fwht_put8(const float v[8], __local float* buf, int row, int x) {
  __local float4* p = (__local float4*)(buf + row * FW_STRIDE + 8 * x);
  p[0] = (float4)(v[0], v[1], v[2], v[3]);
  p[1] = (float4)(v[4], v[5], v[6], v[7]);
}

inline void fwht_get8_scaled(float v[8], __local const float* buf, int row, int x) {
  __local const float4* p = (__local const float4*)(buf + row * FW_STRIDE + 8 * x);
  const float4 lo = p[0];
  const float4 hi = p[1];
  v[0] = lo.x * KV_ROT_SCALE; v[1] = lo.y * KV_ROT_SCALE; v[2] = lo.z * KV_ROT_SCALE;
  v[3] = lo.w * KV_ROT_SCALE; v[4] = hi.x * KV_ROT_SCALE; v[5] = hi.y * KV_ROT_SCALE;
  v[6] = hi.z * KV_ROT_SCALE; v[7] = hi.w * KV_ROT_SCALE;
}

// Stages h = 8 .. KV_D/2 of `rows` rows of buf; the rows·8 transforms are spread over `items`
// work-items (lid = this one's index). No barrier inside: the caller brackets it.
inline void fwht_rows_local(__local float* buf, int rows, int lid, int items) {
  for (int n = lid; n < rows * 8; n += items) {
    __local float* p = buf + (n / 8) * FW_STRIDE + (n % 8);
    float u[KV_D_BLOCKS];
    #pragma unroll
    for (int x = 0; x < KV_D_BLOCKS; ++x) u[x] = p[8 * x];
    // Stage st (stride h = 2^st in x) as KV_D_BLOCKS/2 butterflies with indices computed from
    // counted loops: fully unrollable with constant indices, so u stays in registers (a loop over
    // h <<= 1 is not unrolled by every GPU compiler, and u then lands in stack memory).
    #pragma unroll
    for (int st = 0; st < FW_STAGES; ++st) {
      #pragma unroll
      for (int p = 0; p < KV_D_BLOCKS / 2; ++p) {
        const int lo = ((p >> st) << (st + 1)) | (p & ((1 << st) - 1));
        const int hi = lo + (1 << st);
        const float a = u[lo];
        const float b = u[hi];
        u[lo] = a + b;
        u[hi] = a - b;
      }
    }
    #pragma unroll
    for (int x = 0; x < KV_D_BLOCKS; ++x) p[8 * x] = u[x];
  }
}
