// Pieces shared by the three decode-attention programs (the fused tile-slot kernel of
// attention.cl; the short-context fused kernel and the fp16 kernel, both from attention_short.cl):
// the FWHT of rows held in local memory and the kernel that merges the
// splits' partials. Each program is built from common.cl, this file, then its own file; they all
// write partials the same way: running max m [num_parts], sum l [num_parts], unnormalized output
// in the rotated frame [num_parts][D], part index = (sequence * Hq + head) * num_splits + split.

#define AT_NEG_INF (-INFINITY)

// FWHT of `rows` rows of KV_D floats in local memory, same stage order and butterflies as
// kvarn_cl::fwht_inplace, then the 1/sqrt(D) scale. All items of the group must call it.
inline void at_fwht_local(__local float* x, int rows, int lid, int wg) {
  for (int h = 1; h < KV_D; h <<= 1) {
    for (int p = lid; p < rows * (KV_D / 2); p += wg) {
      const int row = p / (KV_D / 2), b = p % (KV_D / 2);
      const int a = row * KV_D + (((b & ~(h - 1)) << 1) | (b & (h - 1)));
      const float ya = x[a], yb = x[a + h];
      x[a] = ya + yb;
      x[a + h] = ya - yb;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int p = lid; p < rows * KV_D; p += wg) x[p] *= KV_ROT_SCALE;
  barrier(CLK_LOCAL_MEM_FENCE);
}

// Log-sum-exp merge of the splits, normalization, optional rotation back, store.
// Launch: local (AT_MWG), global (AT_MWG, S * Hq). out_f16: store fp16 (round to nearest even).
#define AT_MWG 64
__kernel __attribute__((reqd_work_group_size(AT_MWG, 1, 1)))
void kvarn_attend_merge(__global const float* part, ulong num_parts, int num_splits,
                        int rotate_back, int out_f16, __global void* out) {
  __global const float* pm = part;
  __global const float* pl = part + num_parts;
  __global const float* pacc = part + 2 * num_parts;
  __local float o[KV_D];
  const int lid = (int)get_local_id(0);
  const ulong sq = get_group_id(1);
  const ulong base = sq * num_splits;
  float mx = AT_NEG_INF;
  for (int c = 0; c < num_splits; ++c) mx = fmax(mx, pm[base + c]);
  float lsum = 0.0f;
  for (int d = lid; d < KV_D; d += AT_MWG) o[d] = 0.0f;
  if (mx != AT_NEG_INF) {
    for (int c = 0; c < num_splits; ++c) {
      const float m = pm[base + c];
      if (m == AT_NEG_INF) continue;
      const float f = exp(m - mx);
      lsum += pl[base + c] * f;
      for (int d = lid; d < KV_D; d += AT_MWG) o[d] += pacc[(base + c) * KV_D + d] * f;
    }
    for (int d = lid; d < KV_D; d += AT_MWG) o[d] /= lsum;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (rotate_back && mx != AT_NEG_INF) {
    // mx is uniform over the group, so every item takes this branch together.
    at_fwht_local(o, 1, lid, AT_MWG);
  }
  for (int d = lid; d < KV_D; d += AT_MWG) {
    if (out_f16) vstore_half_rte(o[d], sq * KV_D + d, (__global half*)out);
    else ((__global float*)out)[sq * KV_D + d] = o[d];
  }
}
