// The kernel that merges the context splits' partials of every decode-attention program. All of
// them write partials the same way: running max m [num_parts], sum l [num_parts], unnormalized
// output in the rotated frame [num_parts][D], part index = (sequence * Hq + head) * num_splits +
// split. Needs common.cl and attention_shared.cl.

// Log-sum-exp merge of the splits, normalization, optional rotation back, store.
// Launch: local (AT_MWG), global (AT_MWG, S * Hq): one work-group per output row. Its items are
// AT_MSL split lanes x 64 channel items: a split lane takes every AT_MSL-th split, a channel item
// the channels lid % 64 + 64k, so the loads of a split's partial are coalesced and a row with
// hundreds of splits (batch 1 at long context) still keeps many loads in flight; the split
// factors exp(m - max) are computed once per split, in parallel, into local memory.
// out_f16: store fp16 (round to nearest even).
#define AT_MWG 256
#define AT_MSL (AT_MWG / 64)
#define AT_MCPI ((KV_D + 63) / 64)  // channels per channel item
#define AT_MCHUNK 256               // splits whose factors are in local memory at once
__kernel __attribute__((reqd_work_group_size(AT_MWG, 1, 1)))
void kvarn_attend_merge(__global const float* part, ulong num_parts, int num_splits,
                        int rotate_back, int out_f16, __global void* out) {
  __global const float* pm = part;
  __global const float* pl = part + num_parts;
  __global const float* pacc = part + 2 * num_parts;
  __local float fs[AT_MCHUNK];
  __local float red[AT_MWG];
  __local float o[AT_MSL * KV_D];
  const int lid = (int)get_local_id(0);
  const int lane = lid / 64, ci = lid % 64;
  const ulong sq = get_group_id(1);
  const ulong base = sq * num_splits;

  // Largest running max over the splits.
  float m = AT_NEG_INF;
  for (int c = lid; c < num_splits; c += AT_MWG) m = fmax(m, pm[base + c]);
  red[lid] = m;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = AT_MWG / 2; w > 0; w >>= 1) {
    if (lid < w) red[lid] = fmax(red[lid], red[lid + w]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float mx = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);

  float acc[AT_MCPI];
  for (int k = 0; k < AT_MCPI; ++k) acc[k] = 0.0f;
  float lsum = 0.0f;
  if (mx != AT_NEG_INF) {  // uniform
    for (int c0 = 0; c0 < num_splits; c0 += AT_MCHUNK) {
      const int n = min(AT_MCHUNK, num_splits - c0);
      for (int c = lid; c < n; c += AT_MWG) {
        const float mc = pm[base + c0 + c];
        const float f = mc == AT_NEG_INF ? 0.0f : exp(mc - mx);
        fs[c] = f;
        lsum += f == 0.0f ? 0.0f : pl[base + c0 + c] * f;
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      #pragma unroll 4
      for (int c = lane; c < n; c += AT_MSL) {
        const float f = fs[c];
        if (f != 0.0f) {
          __global const float* src = pacc + (base + c0 + c) * KV_D;
          for (int k = 0; k < AT_MCPI; ++k)
            if (ci + 64 * k < KV_D) acc[k] += src[ci + 64 * k] * f;
        }
      }
      barrier(CLK_LOCAL_MEM_FENCE);
    }
  }
  // Sum over the items (the softmax sum) and over the split lanes (the outputs).
  red[lid] = lsum;
  for (int k = 0; k < AT_MCPI; ++k)
    if (ci + 64 * k < KV_D) o[lane * KV_D + ci + 64 * k] = acc[k];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = AT_MWG / 2; w > 0; w >>= 1) {
    if (lid < w) red[lid] += red[lid + w];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = red[0];
  for (int d = lid; d < KV_D; d += AT_MWG) {
    float v = 0.0f;
    for (int l = 0; l < AT_MSL; ++l) v += o[l * KV_D + d];
    o[d] = mx != AT_NEG_INF && total > 0.0f ? v / total : 0.0f;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (rotate_back && mx != AT_NEG_INF) {
    // mx is uniform over the group, so every item takes this branch together.
    at_fwht_local(o, 1, lid, AT_MWG);
  }
  at_store_output(o, 1, sq, out_f16, out, lid, AT_MWG);
}
