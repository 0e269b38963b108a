// Tile quantization (SPEC §2.3–2.5): variance normalization, row-wise min/max rounding and
// packing into records. Needs common.cl.
//
// One work-group per (job, K or V): group (j, 0) quantizes the K tile of job j, (j, 1) its V tile.
// The tile (G tokens × D channels, token-major fp16 rows) stays on chip: work-item (x, y) keeps
// the fp32 values of tokens [y*Q_RT, y*Q_RT + Q_RT) × channels [8x, 8x + 8) in private memory;
// local memory holds only per-token / per-channel vectors and the partial sums of reductions
// (128×128 fp32 would be 64 KiB, more than the 32 KiB the portability rules allow).
//
// Numerics follow src/cpu/normalize.cpp: cur = (M / e_col) / e_row recomputed from M with two
// divisions, unbiased mean-subtracted std, fp32 log/exp/clamp, imbalance in fp32 compared with
// `<=`. Sums run in fp32 here (double on the CPU), so std values differ in the last bits; the
// agreement bar of SPEC §5 (codes equal except at rounding ties, scales within rtol 1e-3) absorbs that.
//
// Launch: local size Q_WG, global (Q_WG * jobs, 2).

#ifndef Q_RT
#define Q_RT 8
#endif
#define Q_RD 8
#define Q_TX (KV_D / Q_RD)
#define Q_TY (KV_G / Q_RT)
#define Q_WG (Q_TX * Q_TY)
#define Q_TOK_STRIDE (KV_G + 1)  // token partials [x][t], padded against bank conflicts
#define Q_CH_STRIDE (KV_D + 1)   // channel partials [y][d]
#define Q_SCRATCH_A (Q_TX * Q_TOK_STRIDE)
#define Q_SCRATCH_B (Q_TY * Q_CH_STRIDE)
#define Q_SCRATCH (Q_SCRATCH_A > Q_SCRATCH_B ? Q_SCRATCH_A : Q_SCRATCH_B)
#define Q_PMAX (Q_RT > Q_RD ? Q_RT : Q_RD)
#define Q_RED_LANES 16

#define OP_SUM 0
#define OP_MIN 1
#define OP_MAX 2
#define OP_STD 3  // sum of squared deviations -> sqrt(sum / (n - 1))

inline float combine(int op, float a, float b) {
  return op == OP_MIN ? fmin(a, b) : (op == OP_MAX ? fmax(a, b) : a + b);
}

// Reduces, for every token (per_token) or every channel (!per_token), the partial values p of
// all work-items into out[]: per token over the channels, per channel over the tokens. A
// work-item passes p[j] for its token y*Q_RT+j, or p[i] for its channel 8x+i. Contains barriers:
// every work-item calls it with the same per_token and op.
inline void reduce_axis(int per_token, int op, const float p[Q_PMAX], __local float* scratch,
                        __local float* out, int x, int y, int lid) {
  if (per_token) {
    for (int j = 0; j < Q_RT; ++j) scratch[x * Q_TOK_STRIDE + y * Q_RT + j] = p[j];
  } else {
    for (int i = 0; i < Q_RD; ++i) scratch[y * Q_CH_STRIDE + x * Q_RD + i] = p[i];
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int n = per_token ? KV_G : KV_D;        // results
  const int parts = per_token ? Q_TX : Q_TY;    // partials per result
  const int stride = per_token ? Q_TOK_STRIDE : Q_CH_STRIDE;
  const float count = per_token ? (float)KV_D : (float)KV_G;  // values behind each result
  for (int k = lid; k < n; k += Q_WG) {
    float acc = scratch[k];
    for (int q = 1; q < parts; ++q) acc = combine(op, acc, scratch[q * stride + k]);
    if (op == OP_STD) acc = sqrt(acc / (count - 1.0f));
    out[k] = acc;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
}

// cur = (M / e_col) / e_row; the column axis is the token axis for K, the channel axis for V.
inline float scaled(int is_k, float m, float e_tok, float e_ch) {
  return is_k ? (m / e_tok) / e_ch : (m / e_ch) / e_tok;
}

// Unbiased, mean-subtracted std of every token (per_token, over channels) or every channel
// (over tokens) of cur = scaled(M), into out[]. Two passes like the CPU: mean, then deviations.
inline void axis_std(int per_token, int is_k, const float m[Q_RT][Q_RD], const float et[Q_RT],
                     const float ed[Q_RD], __local float* scratch, __local float* out, int x,
                     int y, int lid) {
  float p[Q_PMAX];
  for (int k = 0; k < Q_PMAX; ++k) p[k] = 0.0f;
  for (int j = 0; j < Q_RT; ++j)
    for (int i = 0; i < Q_RD; ++i) {
      const float c = scaled(is_k, m[j][i], et[j], ed[i]);
      if (per_token) p[j] += c; else p[i] += c;
    }
  reduce_axis(per_token, OP_SUM, p, scratch, out, x, y, lid);
  const float count = per_token ? (float)KV_D : (float)KV_G;
  float mean_t[Q_RT], mean_d[Q_RD];
  for (int j = 0; j < Q_RT; ++j) mean_t[j] = per_token ? out[y * Q_RT + j] / count : 0.0f;
  for (int i = 0; i < Q_RD; ++i) mean_d[i] = per_token ? 0.0f : out[x * Q_RD + i] / count;
  for (int k = 0; k < Q_PMAX; ++k) p[k] = 0.0f;
  for (int j = 0; j < Q_RT; ++j)
    for (int i = 0; i < Q_RD; ++i) {
      const float c = scaled(is_k, m[j][i], et[j], ed[i]);
      const float dlt = c - (per_token ? mean_t[j] : mean_d[i]);
      if (per_token) p[j] += dlt * dlt; else p[i] += dlt * dlt;
    }
  reduce_axis(per_token, OP_STD, p, scratch, out, x, y, lid);
}

// imbalance = max/max(min, 1e-8) of the token stds + the same of the channel stds (addition
// commutes, so the K/V order of the two terms does not matter). Every work-item returns the same
// value. red: Q_RED_LANES * 4 floats.
inline float imbalance(__local const float* std_t, __local const float* std_d, __local float* red,
                       int lid) {
  if (lid < Q_RED_LANES) {
    float mnt = std_t[lid], mxt = std_t[lid], mnd = std_d[lid], mxd = std_d[lid];
    for (int k = lid + Q_RED_LANES; k < KV_G; k += Q_RED_LANES) {
      mnt = fmin(mnt, std_t[k]);
      mxt = fmax(mxt, std_t[k]);
    }
    for (int k = lid + Q_RED_LANES; k < KV_D; k += Q_RED_LANES) {
      mnd = fmin(mnd, std_d[k]);
      mxd = fmax(mxd, std_d[k]);
    }
    red[lid] = mnt;
    red[Q_RED_LANES + lid] = mxt;
    red[2 * Q_RED_LANES + lid] = mnd;
    red[3 * Q_RED_LANES + lid] = mxd;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  float mnt = red[0], mxt = red[Q_RED_LANES], mnd = red[2 * Q_RED_LANES], mxd = red[3 * Q_RED_LANES];
  for (int k = 1; k < Q_RED_LANES; ++k) {
    mnt = fmin(mnt, red[k]);
    mxt = fmax(mxt, red[Q_RED_LANES + k]);
    mnd = fmin(mnd, red[2 * Q_RED_LANES + k]);
    mxd = fmax(mxd, red[3 * Q_RED_LANES + k]);
  }
  barrier(CLK_LOCAL_MEM_FENCE);  // red is rewritten by the next call
  return mxt / fmax(mnt, 1e-8f) + mxd / fmax(mnd, 1e-8f);
}

// l = clamp(l + log(clamp(std, 1e-3, 1e3)), -0.3, 10); e = exp(l)  (fp32, as the CPU)
inline void update_log_scale(__local float* l, __local float* e, __local const float* stds, int n,
                             int lid) {
  for (int k = lid; k < n; k += Q_WG) {
    const float s = clamp(stds[k], 1e-3f, 1e3f);
    l[k] = clamp(l[k] + log(s), -0.3f, 10.0f);
    e[k] = exp(l[k]);
  }
}

__kernel __attribute__((reqd_work_group_size(Q_WG, 1, 1)))
void kvarn_quantize(__global const half* k_rows, __global const half* v_rows,
                    __global const uint2* jobs,  // (src_row, dst_record)
                    __global uchar* records, int iters,
                    __global uint* status) {     // min over (job*2 + part) of non-finite tiles
  __local float scratch[Q_SCRATCH];
  __local float l_t[KV_G], e_t[KV_G], best_t[KV_G], std_t[KV_G];
  __local float l_d[KV_D], e_d[KV_D], best_d[KV_D], std_d[KV_D];
  __local float red[4 * Q_RED_LANES];

  const uint job = get_group_id(0);
  const int part = (int)get_group_id(1);
  const int is_k = part == 0;
  const int lid = (int)get_local_id(0);
  const int x = lid % Q_TX;
  const int y = lid / Q_TX;
  const uint2 jb = jobs[job];

  // Load the tile: token-major fp16 rows, 8 channels per vload.
  __global const half* src = (is_k ? k_rows : v_rows) + (ulong)jb.x * KV_D;
  float m[Q_RT][Q_RD];
  bool finite = true;
  for (int j = 0; j < Q_RT; ++j) {
    float v[8];
    unpack8(vload_half8(0, src + (ulong)(y * Q_RT + j) * KV_D + (ulong)(x * Q_RD)), v);
    for (int i = 0; i < Q_RD; ++i) {
      m[j][i] = v[i];
      finite = finite && isfinite(v[i]);
    }
  }
  if (!finite) atomic_min(status, job * 2u + (uint)part);

  for (int k = lid; k < KV_G; k += Q_WG) { l_t[k] = 0.0f; e_t[k] = 1.0f; best_t[k] = 1.0f; }
  for (int k = lid; k < KV_D; k += Q_WG) { l_d[k] = 0.0f; e_d[k] = 1.0f; best_d[k] = 1.0f; }
  float et[Q_RT], ed[Q_RD];
  for (int j = 0; j < Q_RT; ++j) et[j] = 1.0f;
  for (int i = 0; i < Q_RD; ++i) ed[i] = 1.0f;

  // K: columns = tokens, rows = channels. V: columns = channels, rows = tokens.
  const int col_is_token = is_k;
  __local float* l_col = is_k ? l_t : l_d;
  __local float* e_col = is_k ? e_t : e_d;
  __local float* std_col = is_k ? std_t : std_d;
  __local float* l_row = is_k ? l_d : l_t;
  __local float* e_row = is_k ? e_d : e_t;
  __local float* std_row = is_k ? std_d : std_t;
  const int n_col = is_k ? KV_G : KV_D;
  const int n_row = is_k ? KV_D : KV_G;

  axis_std(1, is_k, m, et, ed, scratch, std_t, x, y, lid);
  axis_std(0, is_k, m, et, ed, scratch, std_d, x, y, lid);
  float best = imbalance(std_t, std_d, red, lid);

  for (int it = 1; it <= iters; ++it) {
    // std_col holds colstd(cur) of the current cur.
    update_log_scale(l_col, e_col, std_col, n_col, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int j = 0; j < Q_RT; ++j) et[j] = e_t[y * Q_RT + j];
    for (int i = 0; i < Q_RD; ++i) ed[i] = e_d[x * Q_RD + i];
    axis_std(!col_is_token, is_k, m, et, ed, scratch, std_row, x, y, lid);
    update_log_scale(l_row, e_row, std_row, n_row, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int j = 0; j < Q_RT; ++j) et[j] = e_t[y * Q_RT + j];
    for (int i = 0; i < Q_RD; ++i) ed[i] = e_d[x * Q_RD + i];
    axis_std(1, is_k, m, et, ed, scratch, std_t, x, y, lid);
    axis_std(0, is_k, m, et, ed, scratch, std_d, x, y, lid);
    const float imb = imbalance(std_t, std_d, red, lid);
    if (imb <= best) {  // ties go to the later iteration
      best = imb;
      for (int k = lid; k < KV_G; k += Q_WG) best_t[k] = e_t[k];
      for (int k = lid; k < KV_D; k += Q_WG) best_d[k] = e_d[k];
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);

  // B = (M / bc[col]) / br[row], then each row is rounded on its own (SPEC §2.4): K rows are
  // channels (reduced over tokens), V rows are tokens (reduced over channels).
  for (int j = 0; j < Q_RT; ++j) et[j] = best_t[y * Q_RT + j];
  for (int i = 0; i < Q_RD; ++i) ed[i] = best_d[x * Q_RD + i];
  const int row_is_token = !is_k;
  __local float* lo = std_row;  // free now: reused for the row minimum ...
  __local float* step = l_row;  // ... and the row maximum, then the step
  float p[Q_PMAX];
  for (int pass = 0; pass < 2; ++pass) {
    const int op = pass == 0 ? OP_MIN : OP_MAX;
    for (int k = 0; k < Q_PMAX; ++k) p[k] = op == OP_MIN ? INFINITY : -INFINITY;
    for (int j = 0; j < Q_RT; ++j)
      for (int i = 0; i < Q_RD; ++i) {
        const float b = scaled(is_k, m[j][i], et[j], ed[i]);
        if (row_is_token) p[j] = combine(op, p[j], b); else p[i] = combine(op, p[i], b);
      }
    reduce_axis(row_is_token, op, p, scratch, pass == 0 ? lo : step, x, y, lid);
  }

  const float levels = (float)((1 << (is_k ? KV_KB : KV_VB)) - 1);
  __global uchar* rec = records + (ulong)jb.y * KV_RECORD_BYTES;
  __local const float* br = is_k ? best_d : best_t;
  __local const float* bc = is_k ? best_t : best_d;
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
  // Codes are computed where they are packed (no second 64-value array in registers).
#define Q_CODE(j, i)                                                                        \
  ((uint)clamp(rint((scaled(is_k, m[j][i], et[j], ed[i]) -                                   \
                     lo[row_is_token ? y * Q_RT + (j) : x * Q_RD + (i)]) /                   \
                    step[row_is_token ? y * Q_RT + (j) : x * Q_RD + (i)]),                   \
               0.0f, levels))
  if (is_k) {
    // per channel: Q_RT codes of KV_KB bits -> Q_RT*KV_KB/8 bytes, lowest token in lowest bits
    for (int i = 0; i < Q_RD; ++i) {
      __global uchar* row = rec + KV_OFF_K_CODES + (ulong)(x * Q_RD + i) * KV_K_ROW_BYTES +
                            (ulong)(y * Q_RT * KV_KB / 8);
      for (int byte = 0; byte < Q_RT * KV_KB / 8; ++byte) {
        uint acc = 0;
        for (int c = 0; c < 8 / KV_KB; ++c)
          acc |= Q_CODE(byte * (8 / KV_KB) + c, i) << (c * KV_KB);
        row[byte] = (uchar)acc;
      }
    }
  } else {
    for (int j = 0; j < Q_RT; ++j) {
      __global uchar* row = rec + KV_OFF_V_CODES + (ulong)(y * Q_RT + j) * KV_V_ROW_BYTES +
                            (ulong)(x * Q_RD * KV_VB / 8);
      for (int byte = 0; byte < Q_RD * KV_VB / 8; ++byte) {
        uint acc = 0;
        for (int c = 0; c < 8 / KV_VB; ++c)
          acc |= Q_CODE(j, byte * (8 / KV_VB) + c) << (c * KV_VB);
        row[byte] = (uchar)acc;
      }
    }
  }
}
