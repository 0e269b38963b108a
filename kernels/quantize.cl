// Tile quantization (SPEC §2.3–2.5): variance normalization, row-wise min/max rounding and
// packing into records. Needs common.cl.
//
// One work-group per (job, K or V): group (j, 0) quantizes the K tile of job j, (j, 1) its V tile.
// The tile (G tokens × D channels, token-major fp16 rows) stays on chip: work-item (x, y) keeps
// the values of tokens [y*Q_RT, y*Q_RT + Q_RT) × channels [8x, 8x + 8) in private memory (M and
// the current scaled matrix);
// local memory holds only per-token / per-channel vectors and the partial sums of reductions
// (128×128 fp32 would be 64 KiB, more than the 32 KiB the portability rules allow).
//
// Numerics follow src/cpu/normalize.cpp: cur = (M / e_col) / e_row recomputed from M with two
// divisions, unbiased mean-subtracted std, fp32 log/exp/clamp, imbalance in fp32 compared with
// `<=`. Sums run in fp32 here (double on the CPU), so std values differ in the last bits; the
// agreement bar of SPEC §5 (codes equal except at rounding ties, scales within rtol 1e-3) absorbs that.
//
// Cost structure (the kernel is bound by arithmetic, mostly the IEEE divisions, and by barriers):
// - Each work-item keeps M (mraw) and the current scaled matrix (cur) in private memory. cur is
//   computed once per scale state (2 divisions per value) and then used by both passes of the
//   std (mean, then squared deviations) and by both axes: 4 divisions per value per Sinkhorn
//   iteration (a state after the column update and one after the row update), not 12.
// - Reductions of both axes run in one round (one scratch region per axis, one barrier pair)
//   when both fit in local memory (Q_JOINT); the row-scale update is folded into the reduction
//   that produces the row stds, the column-scale update into the reduction that produces the
//   column stds (both_stds); the imbalance min/max take one barrier. 9 barriers per iteration.
// - With KV_UNROLL (GPU builds) every loop over m/cur is unrolled, so both stay in registers.
//
// Launch: local size Q_WG, global (Q_WG * jobs, 2).

#ifndef Q_RT
#error "quantize.cl: Q_RT (tokens per work-item) must be defined by the host (program_table.cpp)"
#endif
#ifndef Q_WG
#error "quantize.cl: Q_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif
#define Q_RD 8
#define Q_TX (KV_D / Q_RD)
#define Q_TY (KV_G / Q_RT)
#if (KV_G % Q_RT) != 0 || Q_WG != Q_TX * Q_TY
#error "quantize.cl: the host's Q_WG is not (D/8) x (G/Q_RT)"
#endif
#define Q_TOK_STRIDE (KV_G + 1)  // token partials [x][t], padded against bank conflicts
#define Q_CH_STRIDE (KV_D + 1)   // channel partials [y][d]
// Token partials in Q_XP passes of Q_TXP channel blocks each: 1, or 2 where the host's plan for
// a device with less than 32 KiB of local memory does not fit the token region of all Q_TX blocks
// (quantize_token_passes); the combination order is the same (round1).
#ifndef Q_XP
#error "quantize.cl: Q_XP (passes of the token reduction) must be defined by the host (program_table.cpp)"
#endif
#define Q_TXP (Q_TX / Q_XP)
#if (Q_TX % Q_XP) != 0 || Q_XP < 1 || Q_XP > 2
#error "quantize.cl: Q_XP must be 1 or 2 and divide D/8"
#endif
#define Q_SCRATCH_A (Q_TXP * Q_TOK_STRIDE)
#define Q_SCRATCH_B (Q_TY * Q_CH_STRIDE)
#define Q_VECTORS (4 * (KV_G + KV_D))
#define Q_RED_LANES 16
#ifndef Q_LOCAL_BUDGET
#error "quantize.cl: Q_LOCAL_BUDGET (bytes of local memory the joint reduction may use) must be defined by the host (program_table.cpp)"
#endif
// Both axes' partials at once when that stays within Q_LOCAL_BUDGET bytes of local memory in all
// (the host's quantize_local_budget: 28 KiB, or 7/8 of a device that has less than 32 KiB; SPEC §6
// allows 32 KiB; the rest is headroom for the compiler's own use).
#if Q_XP == 1 && (Q_SCRATCH_A + Q_SCRATCH_B + Q_VECTORS + 4 * Q_RED_LANES) * 4 <= Q_LOCAL_BUDGET
#define Q_JOINT 1
#define Q_SCRATCH (Q_SCRATCH_A + Q_SCRATCH_B)
#define Q_SCRATCH_B_AT Q_SCRATCH_A
#else
#define Q_JOINT 0
#define Q_SCRATCH (Q_SCRATCH_A > Q_SCRATCH_B ? Q_SCRATCH_A : Q_SCRATCH_B)
#define Q_SCRATCH_B_AT 0
#endif

// Helpers that take a work-item's private arrays are always inlined: a GPU keeps an array in
// registers only when every access, after inlining, has a constant index.
#define Q_INLINE inline __attribute__((always_inline))

#define OP_MEAN 0  // sum / n
#define OP_MIN 1
#define OP_MAX 2
#define OP_STD 3   // sum of squared deviations -> sqrt(sum / (n - 1))

inline float combine(int op, float a, float b) {
  return op == OP_MIN ? fmin(a, b) : (op == OP_MAX ? fmax(a, b) : a + b);
}

// Stores a work-item's partials of one axis: per token (p[j] for token y*Q_RT+j, over its 8
// channels) into the token region, or per channel (p[i] for channel 8x+i, over its Q_RT tokens)
// into the channel region.
// (Per token: the items of token pass `pass` only.)
Q_INLINE void put_partials(int per_token, const float pt[Q_RT], const float pd[Q_RD],
                           __local float* scratch, int x, int y, int pass) {
  if (per_token) {
#if Q_XP > 1
    if (x / Q_TXP != pass) return;
    const int row = x % Q_TXP;
#else
    const int row = x;
#endif
    KV_UNROLL_LOOP
    for (int j = 0; j < Q_RT; ++j) scratch[row * Q_TOK_STRIDE + y * Q_RT + j] = pt[j];
  } else {
    KV_UNROLL_LOOP
    for (int i = 0; i < Q_RD; ++i) scratch[Q_SCRATCH_B_AT + y * Q_CH_STRIDE + x * Q_RD + i] = pd[i];
  }
}

// Combines the partials of result k (a token if per_token, else a channel) in a fixed order;
// token pass `pass` > 0 continues from the previous passes' running result `prev`.
inline float reduce_result(int per_token, int op, __local const float* scratch, int k, int pass,
                           float prev) {
  const int parts = per_token ? Q_TXP : Q_TY;
  const int stride = per_token ? Q_TOK_STRIDE : Q_CH_STRIDE;
  __local const float* s = scratch + (per_token ? 0 : Q_SCRATCH_B_AT) + k;
#if Q_XP > 1
  float acc = pass == 0 ? s[0] : combine(op, prev, s[0]);
#else
  float acc = s[0];
#endif
  for (int q = 1; q < parts; ++q) acc = combine(op, acc, s[q * stride]);
#if Q_XP > 1
  if (pass != (per_token ? Q_XP - 1 : 0)) return acc;  // running result of an earlier pass
#endif
  const float count = per_token ? (float)KV_D : (float)KV_G;  // values behind each result
  if (op == OP_MEAN) acc = acc / count;
  if (op == OP_STD) acc = sqrt(acc / (count - 1.0f));
  return acc;
}

// l = clamp(l + log(clamp(std, 1e-3, 1e3)), -0.3, 10); e = exp(l)  (fp32, as the CPU)
inline void update_one(__local float* l, __local float* e, float stdv, int k) {
  const float s = clamp(stdv, 1e-3f, 1e3f);
  const float nl = clamp(l[k] + log(s), -0.3f, 10.0f);
  l[k] = nl;
  e[k] = exp(nl);
}

// One reduction round over one axis: out[k] = result k for every token (per_token) or channel.
// With update != 0 the results are also stds that go straight into the log-scale update of that
// axis (upd_l, upd_e). Contains barriers: every work-item calls it with the same arguments.
Q_INLINE void round1(int per_token, int op, const float pt[Q_RT], const float pd[Q_RD],
                     __local float* scratch, __local float* out, int update, __local float* upd_l,
                   __local float* upd_e, int x, int y, int lid) {
  const int n = per_token ? KV_G : KV_D;
#if Q_XP == 1
  put_partials(per_token, pt, pd, scratch, x, y, 0);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int k = lid; k < n; k += Q_WG) {
    const float r = reduce_result(per_token, op, scratch, k, 0, 0.0f);
    out[k] = r;
    if (update) update_one(upd_l, upd_e, r, k);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
#else
  // Two passes (Q_XP == 2) for the token axis: the running results stay in the item's registers
  // (run), and `out` is written once, at the end, as in one pass. The channel axis has work in
  // the first only; every item meets every barrier.
  float run[(KV_G > KV_D ? KV_G : KV_D) / Q_WG + 1];
  put_partials(per_token, pt, pd, scratch, x, y, 0);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int k = lid, i = 0; k < n; k += Q_WG, ++i) {
    const float r = reduce_result(per_token, op, scratch, k, 0, 0.0f);
    run[i] = r;
    if (!per_token) {
      out[k] = r;
      if (update) update_one(upd_l, upd_e, r, k);
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (per_token) put_partials(1, pt, pd, scratch, x, y, 1);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (per_token) {
    for (int k = lid, i = 0; k < n; k += Q_WG, ++i) {
      const float r = reduce_result(1, op, scratch, k, 1, run[i]);
      out[k] = r;
      if (update) update_one(upd_l, upd_e, r, k);
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
#endif
}

// The same op over both axes: out_t[t] per token, out_d[d] per channel; one round if Q_JOINT.
// With update != 0 the results of the column axis (tokens if col_is_token) also go into the
// log-scale update of that axis (upd_l, upd_e), as in round1.
Q_INLINE void round2(int op, const float pt[Q_RT], const float pd[Q_RD], __local float* scratch,
                   __local float* out_t, __local float* out_d, int update, int col_is_token,
                   __local float* upd_l, __local float* upd_e, int x, int y, int lid) {
#if Q_JOINT
  put_partials(1, pt, pd, scratch, x, y, 0);
  put_partials(0, pt, pd, scratch, x, y, 0);
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int k = lid; k < KV_G + KV_D; k += Q_WG) {
    const int per_token = k < KV_G;
    const int kk = per_token ? k : k - KV_G;
    const float r = reduce_result(per_token, op, scratch, kk, 0, 0.0f);
    // A store through a selected pointer, not an if/else pair of stores: when Q_WG == KV_G ==
    // KV_D (D 64, G 64) this loop has exactly two trips, per_token is a constant in each, and
    // Intel's OpenCL CPU compiler (2026.2) crashed (SIGSEGV in SimplifyCFG's removal of the dead
    // arm, inside its vpo-directive-cleanup pass) on the folded if/else. Same values either way.
    (per_token ? out_t : out_d)[kk] = r;
    if (update && per_token == col_is_token) update_one(upd_l, upd_e, r, kk);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
#else
  round1(1, op, pt, pd, scratch, out_t, update && col_is_token, upd_l, upd_e, x, y, lid);
  round1(0, op, pt, pd, scratch, out_d, update && !col_is_token, upd_l, upd_e, x, y, lid);
#endif
}

// cur = (M / e_col) / e_row for this work-item's values; the column axis is the token axis for
// K, the channel axis for V. The divisor of each step is selected, not the quotient, so exactly
// two divisions run per value.
// M row j (channels 8x..8x+7 of token y*Q_RT+j) as floats. (Keeping the fp16 words instead, in
// half the registers, was measured slower on an H100 and removed: 10.2 ms and 189 registers
// against 9.96 ms and 178, opencl_codec_bench, 16,384 k4v2 D=128 tiles.)
typedef float8 q_m_t;
#define Q_M_FROM_RAW(raw) vload_half8(0, (const __private half*)&(raw))
#define Q_M_TO_FLOAT8(w) (w)

Q_INLINE void compute_cur(int is_k, const q_m_t mraw[Q_RT], float cur[Q_RT][Q_RD],
                        __local const float* e_t, __local const float* e_d, int x, int y) {
  float et[Q_RT], ed[Q_RD];
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) et[j] = e_t[y * Q_RT + j];
  KV_UNROLL_LOOP
  for (int i = 0; i < Q_RD; ++i) ed[i] = e_d[x * Q_RD + i];
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) {
    float m[8];
    unpack8(Q_M_TO_FLOAT8(mraw[j]), m);
    KV_UNROLL_LOOP
    for (int i = 0; i < Q_RD; ++i) {
      const float first = is_k ? et[j] : ed[i];
      const float second = is_k ? ed[i] : et[j];
      cur[j][i] = (m[i] / first) / second;
    }
  }
}

// Partial sums of cur per token (pt, over this item's channels) and per channel (pd).
Q_INLINE void partial_sums(const float cur[Q_RT][Q_RD], float pt[Q_RT], float pd[Q_RD]) {
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) pt[j] = 0.0f;
  KV_UNROLL_LOOP
  for (int i = 0; i < Q_RD; ++i) pd[i] = 0.0f;
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) {
    KV_UNROLL_LOOP
    for (int i = 0; i < Q_RD; ++i) {
      pt[j] += cur[j][i];
      pd[i] += cur[j][i];
    }
  }
}

// Partial sums of squared deviations from the per-token means (pt) and per-channel means (pd).
// want_t / want_d skip an axis that is not needed (its partials stay 0).
Q_INLINE void partial_devs(const float cur[Q_RT][Q_RD], __local const float* mean_t,
                         __local const float* mean_d, int want_t, int want_d, float pt[Q_RT],
                         float pd[Q_RD], int x, int y) {
  float mt[Q_RT], md[Q_RD];
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) {
    mt[j] = want_t ? mean_t[y * Q_RT + j] : 0.0f;
    pt[j] = 0.0f;
  }
  KV_UNROLL_LOOP
  for (int i = 0; i < Q_RD; ++i) {
    md[i] = want_d ? mean_d[x * Q_RD + i] : 0.0f;
    pd[i] = 0.0f;
  }
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) {
    KV_UNROLL_LOOP
    for (int i = 0; i < Q_RD; ++i) {
      if (want_t) {
        const float dt = cur[j][i] - mt[j];
        pt[j] += dt * dt;
      }
      if (want_d) {
        const float dd = cur[j][i] - md[i];
        pd[i] += dd * dd;
      }
    }
  }
}

// imbalance = max/max(min, 1e-8) of the token stds + the same of the channel stds (addition
// commutes, so the K/V order of the two terms does not matter). Every work-item returns the same
// value. One barrier: 4 × Q_RED_LANES lanes scan a slice each, then everyone reads the 64
// partials. red is rewritten by the next call only after the many barriers in between.
inline float imbalance(__local const float* std_t, __local const float* std_d,
                       __local float4* red4, int lid) {
  __local float* red = (__local float*)red4;
  for (int s = lid; s < 4 * Q_RED_LANES; s += Q_WG) {
    const int what = s / Q_RED_LANES;  // 0 min t, 1 max t, 2 min d, 3 max d
    const int lane = s % Q_RED_LANES;
    __local const float* v = what < 2 ? std_t : std_d;
    const int n = what < 2 ? KV_G : KV_D;
    float acc = v[lane];
    for (int k = lane + Q_RED_LANES; k < n; k += Q_RED_LANES)
      acc = (what & 1) ? fmax(acc, v[k]) : fmin(acc, v[k]);
    red[s] = acc;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  float4 mn_t = red4[0], mx_t = red4[Q_RED_LANES / 4], mn_d = red4[Q_RED_LANES / 2],
         mx_d = red4[3 * Q_RED_LANES / 4];
  for (int k = 1; k < Q_RED_LANES / 4; ++k) {
    mn_t = fmin(mn_t, red4[k]);
    mx_t = fmax(mx_t, red4[Q_RED_LANES / 4 + k]);
    mn_d = fmin(mn_d, red4[Q_RED_LANES / 2 + k]);
    mx_d = fmax(mx_d, red4[3 * Q_RED_LANES / 4 + k]);
  }
  const float mnt = fmin(fmin(mn_t.x, mn_t.y), fmin(mn_t.z, mn_t.w));
  const float mxt = fmax(fmax(mx_t.x, mx_t.y), fmax(mx_t.z, mx_t.w));
  const float mnd = fmin(fmin(mn_d.x, mn_d.y), fmin(mn_d.z, mn_d.w));
  const float mxd = fmax(fmax(mx_d.x, mx_d.y), fmax(mx_d.z, mx_d.w));
  return mxt / fmax(mnt, 1e-8f) + mxd / fmax(mnd, 1e-8f);
}

// Token and channel stds of cur into std_t / std_d (two rounds: means, then deviations). The
// column stds also make the next iteration's column-scale update right away, into (l_col,
// e_col_next): e_col_next is not the buffer this cur was computed with, which the caller may
// still copy as the best scales; l_col is read only by that update.
Q_INLINE void both_stds(const float cur[Q_RT][Q_RD], __local float* scratch, __local float* std_t,
                      __local float* std_d, int col_is_token, __local float* l_col,
                      __local float* e_col_next, int x, int y, int lid) {
  float pt[Q_RT], pd[Q_RD];
  partial_sums(cur, pt, pd);
  round2(OP_MEAN, pt, pd, scratch, std_t, std_d, 0, col_is_token, l_col, e_col_next, x, y,
         lid);  // std_* hold the means for now
  partial_devs(cur, std_t, std_d, 1, 1, pt, pd, x, y);
  round2(OP_STD, pt, pd, scratch, std_t, std_d, 1, col_is_token, l_col, e_col_next, x, y, lid);
}

// One tile half. In GPU builds is_k is a literal at both call sites (kvarn_quantize): every K/V
// choice below (which axis is the column, which partials a round needs, which divisor comes
// first) is then resolved at compile time, so no work-item computes partials that are thrown
// away, and no private value is selected at run time (which costs instructions and registers, or
// forces an array into stack memory). The __local arrays are the kernel's (OpenCL 1.2 declares them only
// at kernel scope); e_t / e_d hold two buffers each: the column axis alternates between them
// (both_stds), the row axis always uses the first.
Q_INLINE void quantize_tile(const int is_k, __global const half* k_rows,
                            __global const half* v_rows, __global const uint2* jobs,
                            __global uchar* records, int iters, __global uint* status,
                            __local float* scratch, __local float* l_t, __local float* e_t,
                            __local float* best_t, __local float* std_t, __local float* l_d,
                            __local float* e_d, __local float* best_d, __local float* std_d,
                            __local float4* red4) {
  const uint job = get_group_id(0);
  const int part = is_k ? 0 : 1;
  const int lid = (int)get_local_id(0);
  const int x = lid % Q_TX;
  const int y = lid / Q_TX;
  const uint2 jb = jobs[job];

  // Load the tile: token-major fp16 rows, 8 channels = one 16-byte load per token.
  __global const half* src = (is_k ? k_rows : v_rows) + (ulong)jb.x * KV_D;
  q_m_t mraw[Q_RT];  // M (compute_cur)
  float cur[Q_RT][Q_RD];
  bool finite = true;
  KV_UNROLL_LOOP
  for (int j = 0; j < Q_RT; ++j) {
    const uint4 raw = *((__global const uint4*)(src + (ulong)(y * Q_RT + j) * KV_D) + x);
    mraw[j] = Q_M_FROM_RAW(raw);
    float v[8];
    unpack8(Q_M_TO_FLOAT8(mraw[j]), v);
    KV_UNROLL_LOOP
    for (int i = 0; i < Q_RD; ++i) finite = finite && fabs(v[i]) <= KV_MAX_ABS;  // NaN fails too
  }
  if (!finite) atomic_min(status, job * 2u + (uint)part);

  for (int k = lid; k < KV_G; k += Q_WG) { l_t[k] = 0.0f; e_t[k] = 1.0f; best_t[k] = 1.0f; }
  for (int k = lid; k < KV_D; k += Q_WG) { l_d[k] = 0.0f; e_d[k] = 1.0f; best_d[k] = 1.0f; }
  barrier(CLK_LOCAL_MEM_FENCE);

  // K: columns = tokens, rows = channels. V: columns = channels, rows = tokens.
  const int col_is_token = is_k;
  __local float* l_col = is_k ? l_t : l_d;
  __local float* e_col = is_k ? e_t : e_d;  // current column scales (ping-pong, see below)
  __local float* best_col = is_k ? best_t : best_d;
  __local float* l_row = is_k ? l_d : l_t;
  __local float* e_row = is_k ? e_d : e_t;
  __local float* std_row = is_k ? std_d : std_t;
  __local float* best_row = is_k ? best_d : best_t;
  const int n_col = is_k ? KV_G : KV_D;
  const int n_row = is_k ? KV_D : KV_G;

  // The column update of iteration `it` needs colstd of the cur that ended iteration it - 1, so
  // both_stds makes it as soon as those stds exist, into the other column buffer (e_col_next);
  // the buffers swap at the top of the next iteration. That saves a barrier per iteration.
  __local float* e_col_next = e_col + n_col;
  compute_cur(is_k, mraw, cur, e_t, e_d, x, y);  // scales 1: cur = M exactly
  both_stds(cur, scratch, std_t, std_d, col_is_token, l_col, e_col_next, x, y, lid);
  float best = imbalance(std_t, std_d, red4, lid);

  for (int it = 1; it <= iters; ++it) {
    {
      __local float* const swap = e_col;
      e_col = e_col_next;
      e_col_next = swap;
    }
    __local const float* e_t_now = is_k ? e_col : e_row;
    __local const float* e_d_now = is_k ? e_row : e_col;
    compute_cur(is_k, mraw, cur, e_t_now, e_d_now, x, y);
    {
      // Row stds of this cur go straight into the row-scale update (nothing else needs them).
      const int row_is_token = !col_is_token;
      float pt[Q_RT], pd[Q_RD];
      partial_sums(cur, pt, pd);
      round1(row_is_token, OP_MEAN, pt, pd, scratch, std_row, 0, l_row, e_row,
             x, y, lid);
      partial_devs(cur, std_t, std_d, row_is_token, !row_is_token, pt, pd, x, y);
      round1(row_is_token, OP_STD, pt, pd, scratch, std_row, 1, l_row, e_row,
             x, y, lid);
    }
    compute_cur(is_k, mraw, cur, e_t_now, e_d_now, x, y);
    // e_col_next was last read by the best copy of the previous iteration, many barriers ago.
    both_stds(cur, scratch, std_t, std_d, col_is_token, l_col, e_col_next, x, y, lid);
    const float imb = imbalance(std_t, std_d, red4, lid);
    if (imb <= best) {  // ties go to the later iteration
      best = imb;
      for (int k = lid; k < n_col; k += Q_WG) best_col[k] = e_col[k];
      for (int k = lid; k < n_row; k += Q_WG) best_row[k] = e_row[k];
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);

  // B = (M / bc[col]) / br[row], then each row is rounded on its own (SPEC §2.4): K rows are
  // channels (reduced over tokens), V rows are tokens (reduced over channels).
  compute_cur(is_k, mraw, cur, best_t, best_d, x, y);
  const int row_is_token = !is_k;
  __local float* lo = std_row;  // free now: reused for the row minimum ...
  __local float* step = l_row;  // ... and the row maximum, then the step
  {
    float pt[Q_RT], pd[Q_RD];
    KV_UNROLL_LOOP
    for (int pass = 0; pass < 2; ++pass) {
      const int op = pass == 0 ? OP_MIN : OP_MAX;
      KV_UNROLL_LOOP
      for (int j = 0; j < Q_RT; ++j) pt[j] = op == OP_MIN ? INFINITY : -INFINITY;
      KV_UNROLL_LOOP
      for (int i = 0; i < Q_RD; ++i) pd[i] = op == OP_MIN ? INFINITY : -INFINITY;
      KV_UNROLL_LOOP
      for (int j = 0; j < Q_RT; ++j) {
        KV_UNROLL_LOOP
        for (int i = 0; i < Q_RD; ++i) {
          if (row_is_token) pt[j] = combine(op, pt[j], cur[j][i]);
          else pd[i] = combine(op, pd[i], cur[j][i]);
        }
      }
      round1(row_is_token, op, pt, pd, scratch, pass == 0 ? lo : step, 0, lo,
             lo, x, y, lid);
    }
  }

  const float levels = (float)((1 << (is_k ? KV_KB : KV_VB)) - 1);
  __global uchar* rec = records + (ulong)jb.y * KV_RECORD_BYTES;
  __local const float* br = best_row;
  __local const float* bc = best_col;
  for (int k = lid; k < n_row; k += Q_WG) {
    const float s = fmax((step[k] - lo[k]) / levels, 1e-10f);
    step[k] = s;
    if (is_k) {
      vstore_half_rte(br[k] * s, k, (__global half*)(rec + KV_OFF_S_COL_K));
      vstore_half_rte(br[k] * lo[k], k, (__global half*)(rec + KV_OFF_ZP_K));
    } else {
      vstore_half_rte(br[k] * s, k, (__global half*)(rec + KV_OFF_S_ROW_V));
      vstore_half_rte(br[k] * lo[k], k, (__global half*)(rec + KV_OFF_ZP_V));
    }
  }
  for (int k = lid; k < n_col; k += Q_WG)
    vstore_half_rte(bc[k], k,
                    (__global half*)(rec + (is_k ? KV_OFF_S_ROW_K : KV_OFF_S_COL_V)));
  barrier(CLK_LOCAL_MEM_FENCE);

  // Codes: q = clamp(rint((b - lo) / step), 0, levels), rint = round half to even.
  // K row d (channel) holds codes along tokens: this work-item owns Q_RT consecutive tokens of
  // each of its 8 channels = Q_RT*KB/8 bytes per channel. V row t holds codes along channels:
  // 8 consecutive channels per owned token = VB bytes.
#define Q_CODE(j, i)                                                                        \
  ((uint)clamp(rint((cur[j][i] - lo[row_is_token ? y * Q_RT + (j) : x * Q_RD + (i)]) /       \
                    step[row_is_token ? y * Q_RT + (j) : x * Q_RD + (i)]),                   \
               0.0f, levels))
  if (is_k) {
    // per channel: Q_RT codes of KV_KB bits -> Q_RT*KV_KB/8 bytes, lowest token in lowest bits
    KV_UNROLL_LOOP
    for (int i = 0; i < Q_RD; ++i) {
      __global uchar* row = rec + KV_OFF_K_CODES + (ulong)(x * Q_RD + i) * KV_K_ROW_BYTES +
                            (ulong)(y * Q_RT * KV_KB / 8);
      KV_UNROLL_LOOP
      for (int byte = 0; byte < Q_RT * KV_KB / 8; ++byte) {
        uint acc = 0;
        KV_UNROLL_LOOP
        for (int c = 0; c < 8 / KV_KB; ++c)
          acc |= Q_CODE(byte * (8 / KV_KB) + c, i) << (c * KV_KB);
        row[byte] = (uchar)acc;
      }
    }
  } else {
    KV_UNROLL_LOOP
    for (int j = 0; j < Q_RT; ++j) {
      __global uchar* row = rec + KV_OFF_V_CODES + (ulong)(y * Q_RT + j) * KV_V_ROW_BYTES +
                            (ulong)(x * Q_RD * KV_VB / 8);
      KV_UNROLL_LOOP
      for (int byte = 0; byte < Q_RD * KV_VB / 8; ++byte) {
        uint acc = 0;
        KV_UNROLL_LOOP
        for (int c = 0; c < 8 / KV_VB; ++c)
          acc |= Q_CODE(j, byte * (8 / KV_VB) + c) << (c * KV_VB);
        row[byte] = (uchar)acc;
      }
    }
  }
#undef Q_CODE
}

__kernel __attribute__((reqd_work_group_size(Q_WG, 1, 1)))
void kvarn_quantize(__global const half* k_rows, __global const half* v_rows,
                    __global const uint2* jobs,  // (src_row, dst_record)
                    __global uchar* records, int iters,
                    __global uint* status_words,  // status_words[status_word]: min over
                    uint status_word) {               // (job*2 + part) of non-finite tiles
  // The word index lets the decode step give every layer its own word of one status buffer
  // (read once per step); the plain quantize call passes word 0 of its own buffer.
  __global uint* status = status_words + status_word;
  __local float scratch[Q_SCRATCH];
  __local float l_t[KV_G], e_t[2 * KV_G], best_t[KV_G], std_t[KV_G];
  __local float l_d[KV_D], e_d[2 * KV_D], best_d[KV_D], std_d[KV_D];
  __local float4 red4[Q_RED_LANES];
#if defined(KV_UNROLL) && KV_UNROLL
  // GPU builds: one specialized copy per tile half. The branch is uniform per work-group, so
  // the barriers inside are reached by all its work-items.
  if (get_group_id(1) == 0)
    quantize_tile(1, k_rows, v_rows, jobs, records, iters, status, scratch, l_t, e_t, best_t,
                  std_t, l_d, e_d, best_d, std_d, red4);
  else
    quantize_tile(0, k_rows, v_rows, jobs, records, iters, status, scratch, l_t, e_t, best_t,
                  std_t, l_d, e_d, best_d, std_d, red4);
#else
  // CPU builds (PoCL): one copy with a run-time is_k; the same code, compiled in half the time.
  quantize_tile(get_group_id(1) == 0, k_rows, v_rows, jobs, records, iters, status, scratch, l_t,
                e_t, best_t, std_t, l_d, e_d, best_d, std_d, red4);
#endif
}
