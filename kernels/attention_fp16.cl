// Plain decode attention over an uncompressed fp16 cache [S][Hk][capacity][D] (the fp16 baseline
// and the second half of the materialize path). Same work-group shape, online softmax, split-K
// partials, direct output (one split) and merge kernel as the fused path (attention.cl, built
// before this file); every unit is G consecutive fp16 rows, so this program is built with the
// record geometry of k4v2_g128 at the cache's head_dim (only KV_D, KV_G and the K/V bit widths
// that shape the work-group matter here). Each K/V row is read once for all AT_HPW query heads.
//
// Launch: local (AT_WG, 1, 1), global (num_splits * AT_WG, Hk * (R / AT_HPW), S). rotate_q: the
// rows are in the rotated frame (a materialized KVarN cache), so q is rotated first and the
// output rotated back.
__kernel __attribute__((reqd_work_group_size(AT_WG, 1, 1)))
void kvarn_attend_fp16(__global const float* q, __global const half* k, __global const half* v,
                       int capacity, __global const int* seq_lens, int num_kv_heads, int q_per_kv,
                       int num_splits, float scale, int rotate_q, int out_f16,
                       __global void* out, __global float* part, ulong num_parts) {
  __local AtLocal L;
  const int lid = (int)get_local_id(0);
  const int split = (int)get_group_id(0);
  const int hb_per_kv = q_per_kv / AT_HPW;
  const int h = (int)get_group_id(1) / hb_per_kv, hb = (int)get_group_id(1) % hb_per_kv;
  const int s = (int)get_group_id(2);
  const int hq_total = num_kv_heads * q_per_kv;
  const int h0 = h * q_per_kv + hb * AT_HPW;

  at_load_queries(q, hq_total, s, h0, &L, lid, rotate_q);
  float A[AT_HPW][AT_VC], m[AT_HPW], l[AT_HPW];
  at_begin(A, m, l);

  const int len = seq_lens[s];
  const int n = (len + KV_G - 1) / KV_G;
  const int u0 = (int)((long)n * split / num_splits), u1 = (int)((long)n * (split + 1) / num_splits);
  const ulong rows = ((ulong)s * num_kv_heads + h) * capacity;
  const int slot = lid / AT_IPS;
  for (int base = u0; base < u1; base += AT_NS) {
    const int ui = base + slot;
    AtUnit u;
    u.rec = 0;
    u.is_rec = 0;
    const int present = ui < u1;  // the last step may leave slots without a unit
    u.k = k + (present ? (rows + (ulong)ui * KV_G) * KV_D : 0);
    u.v = v + (present ? (rows + (ulong)ui * KV_G) * KV_D : 0);
    u.n = present ? min(KV_G, len - ui * KV_G) : 0;
    at_step(u, scale, &L, lid, A, m, l);
  }
  at_finish(&L, lid, A, m, l, (ulong)s * hq_total + h0, split, num_splits, part, num_parts,
            rotate_q, out_f16, out);
}
