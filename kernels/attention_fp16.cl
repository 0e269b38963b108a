// Plain decode attention over an uncompressed fp16 cache [S][Hk][capacity][D] (the fp16 baseline
// and the second half of the materialize path). Same work-group shape, online softmax, split-K
// partials and merge kernel as the fused path (attention.cl, built before this file); every unit
// is G consecutive fp16 rows, so this program is built with the record geometry of k4v2_g128 at
// the cache's head_dim (only KV_D and KV_G matter here).
//
// Launch: local (AT_WG, 1, 1), global (num_splits * AT_WG, Hk * (R / AT_HPW), S). rotate_q: the
// rows are in the rotated frame (a materialized KVarN cache), so q is rotated first (the merge
// rotates the output back).
__kernel __attribute__((reqd_work_group_size(AT_WG, 1, 1)))
void kvarn_attend_fp16(__global const float* q, __global const half* k, __global const half* v,
                       int capacity, __global const int* seq_lens, int num_kv_heads, int q_per_kv,
                       int num_splits, float scale, int rotate_q, __global float* part,
                       ulong num_parts) {
  __local AtLocal L;
  const int lid = (int)get_local_id(0);
  const int split = (int)get_group_id(0);
  const int hb_per_kv = q_per_kv / AT_HPW;
  const int h = (int)get_group_id(1) / hb_per_kv, hb = (int)get_group_id(1) % hb_per_kv;
  const int s = (int)get_group_id(2);
  const int hq_total = num_kv_heads * q_per_kv;
  const int h0 = h * q_per_kv + hb * AT_HPW;

  at_load_queries(q, hq_total, s, h0, &L, lid, rotate_q);
  float A[AT_HPW][AT_VC], lpart[AT_HPW];
  at_begin(&L, lid, A, lpart);

  const int len = seq_lens[s];
  const int n = (len + KV_G - 1) / KV_G;
  const int u0 = (int)((long)n * split / num_splits), u1 = (int)((long)n * (split + 1) / num_splits);
  const ulong rows = ((ulong)s * num_kv_heads + h) * capacity;
  for (int ui = u0; ui < u1; ++ui) {
    AtUnit u;
    u.rec = 0;
    u.k = k + (rows + (ulong)ui * KV_G) * KV_D;
    u.v = v + (rows + (ulong)ui * KV_G) * KV_D;
    u.n = min(KV_G, len - ui * KV_G);
    at_unit(u, scale, &L, lid, A, lpart);
  }
  at_write_partials(&L, lid, A, lpart, (ulong)s * hq_total + h0, split, num_splits, part,
                    part + num_parts, part + 2 * num_parts);
}
