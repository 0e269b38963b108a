// Fused decode attention from the records on matrix units (SPEC §4, §7): the NVIDIA fast path.
//
// Both products of a tile are mma.sync m16n8k16 tiles (fp16 operands, fp32 accumulation):
//   scores   S^T[token][col] = Σ_d codeK[token][d] · Bq[d][col]      (M tokens, K channels)
//   values   O^T[chan][col]  = Σ_t codeV[chan][t]  · W[t][col]       (M channels, K tokens)
// The query heads of a KV group are the N side: column 2h holds the high fp16 part of head h's
// operand, column 2h+1 the low part (x - fp16(x)), so one mma keeps about 22 bits of the fp32
// operand (q·s_col_K, p·s_row_V are not exact in fp16; the codes 0..15 are). Up to 4 heads fill
// one n-block of 8 columns; 5 to 8 heads take two n-blocks over the same code fragments.
// Per tile, the fp16 operands are scaled by a power of two (from the tile's largest scale) so
// that they neither overflow fp16 nor lose bits to subnormals; the scale is divided out in fp32.
//
// One work-group is one warp (32 work-items: lane = 4g + t, g = lane/4, t = lane%4 in the mma
// fragment layout). It streams the units (sink chunks, record tiles, tail chunks) of one context
// split of one (sequence, KV head, block of AT_HPW query heads) with an online softmax, and writes
// a split partial (merged by kvarn_attend_merge, or by the split's last work-group in the same
// launch: at_last_split, attention_merge.cl) or, with one split, the output itself.
//
// Token and channel permutations. The mma index of a token or channel is free as long as both
// operands agree, so they are chosen so that every lane's code bits come from a few contiguous
// words of the record:
//   scores: lane g takes tokens [g·G/8, (g+1)·G/8) of 4 channel rows per k-block: row g of m-block
//           i is token g·G/8 + i, row g+8 is token g·G/8 + G/16 + i; lane t takes channels
//           [t·D/4, (t+1)·D/4), k-block kb uses channels t·D/4 + 4kb + {0,1} (k = 2t, 2t+1) and
//           + {2,3} (k = 2t+8, 2t+9);
//   values: the k index of V k-block i is the row of score m-block i (so the softmax weights go
//           from the score accumulators to the V operand by an 8x8 transpose of fp16 pairs
//           through warp shuffles, never through memory); lane g takes channels
//           [g·D/8, (g+1)·D/8): row g of V m-block mi is channel g·D/8 + mi, row g+8 is channel
//           g·D/8 + D/16 + mi.
// A code becomes an fp16 operand with a byte permute (two channel rows into one register), an
// and-or into the mantissa of 1024 and one fp16 fma that removes the offset (exact), SPEC §7.
//
// The cross-lane and matrix operations are the primitives of mma_primitives.cl: inline PTX on
// NVIDIA, or emulated through local memory (-DAT_MMA_EMULATE=1), which lets PoCL run and test
// this kernel's index and softmax logic in CI.
// Needs common.cl (geometry), attention_shared.cl (FWHT of rows), attention_merge.cl
// (kvarn_attend_merge) and mma_primitives.cl.

#pragma OPENCL FP_CONTRACT ON

#ifndef AT_HPW
#error "attention_mma.cl needs AT_HPW (query heads per work-group, 1..8)"
#endif
#if AT_HPW < 1 || AT_HPW > 8
#error "AT_HPW must be 1 to 8"
#endif
#define NB ((AT_HPW + 3) / 4)          // n-blocks of 8 columns (4 heads, high and low part)
#define MBK (KV_G / 16)                // score m-blocks (tokens)
#define KBK (KV_D / 16)                // score k-blocks (channels)
#define MBV (KV_D / 16)                // value m-blocks (channels)
#define TPL (KV_G / 8)                 // tokens per lane (scores, softmax)
#define CPL (KV_D / 8)                 // channels per lane (values, output)
#define KSB (TPL * KV_KB)              // bits of a lane's span of one K channel row
#define VSB (CPL * KV_VB)              // bits of a lane's span of one V token row
#define KSW (KSB >= 32 ? KSB / 32 : 1) // 32-bit words of a K span
#define VSW (VSB >= 32 ? VSB / 32 : 1)
#define MCH (MBV < 8 ? MBV : 8)        // V m-blocks per chunk (bounds the accumulator registers)
// Code words are loaded per k-block, next to their use. Loading a whole tile's words ahead (the
// next record's K words during this one's softmax, the V words during the softmax) was measured
// slower on the H200 at every batch size that fills the GPU (docs/perf/h200_run2/ablation): the
// registers it holds cost more in resident warps than the latency it hides.
#define AT_LOG2E 1.4426950408889634f
#define AT_LN2 0.6931471805599453f
#if (KV_G != 64 && KV_G != 128) || KSB > 64 || VSB > 128 || (KV_D % 64) != 0
#error "attention_mma.cl: unsupported geometry"
#endif

// Online-softmax state of a lane: head t (and 4+t) of the work-group's block, channels of its
// g (value-side layout), running max in log2 units, the lane's share of the sum.
typedef struct {
  float acc[NB][MBV][2];
  float m[NB];
  float l[NB];
} AtMmaState;

// One unit of context: a record tile (rec != 0) or n fp16 rows at k/v (token-major, D halves).
// Processes it into st. All 32 work-items call it together.
inline void at_mma_unit(int is_rec, __global const uchar* rec, __global const half* kr,
                        __global const half* vr, int n, __local const float* q, float qmax,
                        float scale2, AtMmaState* st, int lane AT_WARP_ARG) {
  const int g = lane >> 2, t = lane & 3;
  const int part = g & 1;

  // ---- per-tile factors, kept as raw fp16 pairs (half the registers of floats) -----------------
  uint skw[KV_D / 8];                     // s_col_K of channels [t*D/4, (t+1)*D/4)
  uint rkw[TPL / 2];                      // s_row_K of tokens g*TPL + f
  uint zkw[CPL / 2];                      // zp_K of channels g*CPL + f
  if (is_rec) {
    at_load_words(rec + KV_OFF_S_COL_K + 2 * t * (KV_D / 4), KV_D / 8, skw);
    at_load_words(rec + KV_OFF_S_ROW_K + 2 * g * TPL, TPL / 2, rkw);
    at_load_words(rec + KV_OFF_ZP_K + 2 * g * CPL, CPL / 2, zkw);
  } else {  // fp16 rows: every scale 1, every zero point 0
    AT_MMA_UNROLL
    for (int i = 0; i < KV_D / 8; ++i) skw[i] = 0x3C003C00u;
    AT_MMA_UNROLL
    for (int i = 0; i < TPL / 2; ++i) rkw[i] = 0x3C003C00u;
    AT_MMA_UNROLL
    for (int i = 0; i < CPL / 2; ++i) zkw[i] = 0u;
  }
  // Power-of-two operand scales of the tile: K side from max|s_col_K| * max|q|, V side from
  // max|s_row_V| (softmax weights are at most 1). The largest magnitude of fp16 values is the
  // largest of their bits without the sign (NaN aside), so no conversion is needed for it.
  uint sbits = 0;
  AT_MMA_UNROLL
  for (int i = 0; i < KV_D / 8; ++i) sbits = max(sbits, max(skw[i] & 0x7FFFu, (skw[i] >> 16) & 0x7FFFu));
  const float smax0 = at_h2_lo(sbits AT_WARP);
  float smax = fmax(smax0, at_shfl_xor(smax0, 1 AT_WARP));
  smax = fmax(smax, at_shfl_xor(smax, 2 AT_WARP));
  const float ks = at_pow2_scale(smax * qmax), ks_inv = 1.0f / ks;

  // Σ_d q·zp_K per head of the lane (t, 4+t), over all channels.
  float zdot[NB];
  AT_MMA_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    const int h = nb * 4 + t;
    float z = 0.0f;
    if (h < AT_HPW) {
      AT_MMA_UNROLL
      for (int i = 0; i < CPL / 2; ++i)
        z += q[h * KV_D + g * CPL + 2 * i] * at_h2_lo(zkw[i] AT_WARP) +
             q[h * KV_D + g * CPL + 2 * i + 1] * at_h2_hi(zkw[i] AT_WARP);
    }
    zdot[nb] = at_sum_g(z AT_WARP);
  }

  // ---- scores: S[nb][i] is m-block i (tokens), columns of n-block nb ------------------------
  float S[NB][MBK][4];
  AT_MMA_UNROLL
  for (int nb = 0; nb < NB; ++nb)
    AT_MMA_UNROLL
    for (int i = 0; i < MBK; ++i)
      AT_MMA_UNROLL
      for (int e = 0; e < 4; ++e) S[nb][i][e] = 0.0f;
  AT_MMA_UNROLL
  for (int kb = 0; kb < KBK; ++kb) {
    const int c0 = t * (KV_D / 4) + 4 * kb;  // channels c0 .. c0+3 of this lane
    // B operand (query factors) of each n-block: column g = head nb*4 + g/2, part g%2.
    uint b0[NB], b1[NB];
    AT_MMA_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      const int h = nb * 4 + (g >> 1);
      float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (h < AT_HPW) {
        AT_MMA_UNROLL
        for (int j = 0; j < 4; ++j) {
          const uint w2 = skw[2 * kb + j / 2];
          x[j] = q[h * KV_D + c0 + j] * ((j & 1) ? at_h2_hi(w2 AT_WARP) : at_h2_lo(w2 AT_WARP)) * ks;
        }
      }
      b0[nb] = at_part_h2(x[0], x[1], part AT_WARP);
      b1[nb] = at_part_h2(x[2], x[3], part AT_WARP);
    }
    if (is_rec) {
      uint w[4][KSW];
      AT_MMA_UNROLL
      for (int j = 0; j < 4; ++j)
        at_load_span(rec + KV_OFF_K_CODES + (c0 + j) * KV_K_ROW_BYTES + g * (KSB / 8), KSB, w[j]);
      AT_MMA_UNROLL
      for (int i = 0; i < MBK; ++i) {
        // Field i (row g) and MBK + i (row g+8) of the channel pairs (c0, c0+1), (c0+2, c0+3).
        uint a[4];
        at_code_fragment(w[0], w[1], w[2], w[3], i, MBK + i, KV_KB, a AT_WARP);
        AT_MMA_UNROLL
        for (int nb = 0; nb < NB; ++nb) at_mma(S[nb][i], a[0], a[1], a[2], a[3], b0[nb], b1[nb] AT_WARP);
      }
    } else {
      // fp16 rows: channels c0..c0+3 of tokens g*TPL + i (row g) and g*TPL + MBK + i (row g+8).
      AT_MMA_UNROLL
      for (int i = 0; i < MBK; ++i) {
        const int ta = g * TPL + i, tb = ta + MBK;
        uint2 ra = (uint2)(0u, 0u), rb = (uint2)(0u, 0u);
        if (ta < n) ra = *(__global const uint2*)(kr + (ulong)ta * KV_D + c0);
        if (tb < n) rb = *(__global const uint2*)(kr + (ulong)tb * KV_D + c0);
        AT_MMA_UNROLL
        for (int nb = 0; nb < NB; ++nb) at_mma(S[nb][i], ra.x, rb.x, ra.y, rb.y, b0[nb], b1[nb] AT_WARP);
      }
    }
  }

  // The tile's V-side scales: issued here, in flight while the softmax runs.
  uint rvw[TPL / 2], zvw[TPL / 2];  // s_row_V, zp_V of tokens g*TPL + f
  uint cvw[CPL / 2];                // s_col_V of channels g*CPL + f
  if (is_rec) {
    at_load_words(rec + KV_OFF_S_ROW_V + 2 * g * TPL, TPL / 2, rvw);
    at_load_words(rec + KV_OFF_ZP_V + 2 * g * TPL, TPL / 2, zvw);
    at_load_words(rec + KV_OFF_S_COL_V + 2 * g * CPL, CPL / 2, cvw);
  } else {
    AT_MMA_UNROLL
    for (int i = 0; i < TPL / 2; ++i) { rvw[i] = 0x3C003C00u; zvw[i] = 0u; }
    AT_MMA_UNROLL
    for (int i = 0; i < CPL / 2; ++i) cvw[i] = 0x3C003C00u;
  }

  // ---- online softmax over the lane's tokens g*TPL + f (f = r*MBK + i) ----------------------
  uint vbits = 0;
  AT_MMA_UNROLL
  for (int i = 0; i < TPL / 2; ++i) vbits = max(vbits, max(rvw[i] & 0x7FFFu, (rvw[i] >> 16) & 0x7FFFu));
  const float vmax = at_max_g(at_h2_lo(vbits AT_WARP) AT_WARP);
  const float vs = at_pow2_scale(vmax), vs_inv = 1.0f / vs;
  uint Wb[NB][MBK][2];  // V B operand per n-block and V k-block
  float y[NB], alpha[NB];
  AT_MMA_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    float s[TPL];
    float mt = -INFINITY;
    AT_MMA_UNROLL
    for (int i = 0; i < MBK; ++i) {
      AT_MMA_UNROLL
      for (int r = 0; r < 2; ++r) {
        const int f = r * MBK + i;
        const float raw = (S[nb][i][2 * r] + S[nb][i][2 * r + 1]) * ks_inv + zdot[nb];
        const float srk = (f & 1) ? at_h2_hi(rkw[f / 2] AT_WARP) : at_h2_lo(rkw[f / 2] AT_WARP);
        s[f] = g * TPL + f < n ? srk * raw * scale2 : -INFINITY;
        mt = fmax(mt, s[f]);
      }
    }
    mt = at_max_g(mt AT_WARP);
    const float mn = fmax(st->m[nb], mt);
    alpha[nb] = st->m[nb] == -INFINITY ? 0.0f : native_exp2(st->m[nb] - mn);
    st->m[nb] = mn;
    float lsum = 0.0f, ysum = 0.0f;
    float wv[TPL];
    AT_MMA_UNROLL
    for (int f = 0; f < TPL; ++f) {
      const float p = s[f] == -INFINITY ? 0.0f : native_exp2(s[f] - mn);
      lsum += p;
      const float zpv = (f & 1) ? at_h2_hi(zvw[f / 2] AT_WARP) : at_h2_lo(zvw[f / 2] AT_WARP);
      const float srv = (f & 1) ? at_h2_hi(rvw[f / 2] AT_WARP) : at_h2_lo(rvw[f / 2] AT_WARP);
      ysum += p * zpv;
      wv[f] = p * srv * vs;
    }
    st->l[nb] = st->l[nb] * alpha[nb] + lsum;
    y[nb] = at_sum_g(ysum AT_WARP);
    AT_MMA_UNROLL
    for (int i = 0; i < MBK; ++i) {
      Wb[nb][i][0] = at_transpose8(at_split_h2(wv[i] AT_WARP), lane AT_WARP);
      Wb[nb][i][1] = at_transpose8(at_split_h2(wv[MBK + i] AT_WARP), lane AT_WARP);
    }
  }

  // ---- values: chunks of MCH m-blocks (channels), k-blocks = score m-blocks -----------------
  AT_MMA_UNROLL
  for (int ch = 0; ch < MBV; ch += MCH) {
    float O[NB][MCH][4];
    AT_MMA_UNROLL
    for (int nb = 0; nb < NB; ++nb)
      AT_MMA_UNROLL
      for (int mi = 0; mi < MCH; ++mi)
        AT_MMA_UNROLL
        for (int e = 0; e < 4; ++e) O[nb][mi][e] = 0.0f;
    AT_MMA_UNROLL
    for (int i = 0; i < MBK; ++i) {
      // k = 2t, 2t+1 -> tokens 2t*TPL + i, (2t+1)*TPL + i; k + 8 -> the same + MBK.
      const int tk[4] = {2 * t * TPL + i, (2 * t + 1) * TPL + i, 2 * t * TPL + MBK + i,
                         (2 * t + 1) * TPL + MBK + i};
      if (is_rec) {
        uint w[4][VSW];
        AT_MMA_UNROLL
        for (int j = 0; j < 4; ++j)
          at_load_span(rec + KV_OFF_V_CODES + tk[j] * KV_V_ROW_BYTES + g * (VSB / 8), VSB, w[j]);
        AT_MMA_UNROLL
        for (int mi = 0; mi < MCH; ++mi) {
          uint a[4];  // rows g and g+8 of V m-block ch+mi: fields ch+mi and MBV+ch+mi
          at_code_fragment(w[0], w[1], w[2], w[3], ch + mi, MBV + ch + mi, KV_VB, a AT_WARP);
          AT_MMA_UNROLL
          for (int nb = 0; nb < NB; ++nb)
            at_mma(O[nb][mi], a[0], a[1], a[2], a[3], Wb[nb][i][0], Wb[nb][i][1] AT_WARP);
        }
      } else {
        // fp16 rows: channels g*CPL .. of the four tokens, zero for tokens past n (their
        // weights are 0, but 0 * a NaN of unwritten rows would not be).
        uint w[4][CPL / 2];
        AT_MMA_UNROLL
        for (int j = 0; j < 4; ++j) {
          AT_MMA_UNROLL
          for (int c = 0; c < CPL / 2; c += 4) {
            uint4 v = (uint4)(0u, 0u, 0u, 0u);
            if (tk[j] < n) v = *(__global const uint4*)(vr + (ulong)tk[j] * KV_D + g * CPL + 2 * c);
            w[j][c] = v.x; w[j][c + 1] = v.y; w[j][c + 2] = v.z; w[j][c + 3] = v.w;
          }
        }
        AT_MMA_UNROLL
        for (int mi = 0; mi < MCH; ++mi) {
          const int f0 = ch + mi, f1 = MBV + ch + mi;
          const uint s0 = (f0 & 1) ? 0x7632u : 0x5410u, s1 = (f1 & 1) ? 0x7632u : 0x5410u;
          const uint a0 = at_prmt(w[0][f0 / 2], w[1][f0 / 2], s0 AT_WARP);
          const uint a1 = at_prmt(w[0][f1 / 2], w[1][f1 / 2], s1 AT_WARP);
          const uint a2 = at_prmt(w[2][f0 / 2], w[3][f0 / 2], s0 AT_WARP);
          const uint a3 = at_prmt(w[2][f1 / 2], w[3][f1 / 2], s1 AT_WARP);
          AT_MMA_UNROLL
          for (int nb = 0; nb < NB; ++nb)
            at_mma(O[nb][mi], a0, a1, a2, a3, Wb[nb][i][0], Wb[nb][i][1] AT_WARP);
        }
      }
    }
    // acc = alpha*acc + s_col_V * (O / vs + Σ p·zp_V), channels g*CPL + (r*MBV + ch + mi).
    AT_MMA_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      AT_MMA_UNROLL
      for (int mi = 0; mi < MCH; ++mi) {
        AT_MMA_UNROLL
        for (int r = 0; r < 2; ++r) {
          const float o = (O[nb][mi][2 * r] + O[nb][mi][2 * r + 1]) * vs_inv + y[nb];
          const int fc = r * MBV + ch + mi;
          const float scv = (fc & 1) ? at_h2_hi(cvw[fc / 2] AT_WARP) : at_h2_lo(cvw[fc / 2] AT_WARP);
          st->acc[nb][ch + mi][r] = st->acc[nb][ch + mi][r] * alpha[nb] + scv * o;
        }
      }
    }
  }
}

// Fused decode attention on matrix units. Launch: local (32, 1, 1), global (num_splits * 32,
// Hk * (R / AT_HPW), S); arguments as kvarn_attend_records (attention.cl), the split result too:
// finish (attention_merge.cl) says whether it stores the output (one split), writes partials, or
// writes them and the last split of each group's rows merges them. seq_info is int4
// {slot, sink_len, num_blocks, tail_len}; split c takes units [n*c/NS, n*(c+1)/NS) of the
// sequence's ceil(sink_len/G) sink chunks, num_blocks records and ceil(tail_len/G) tail chunks.
__kernel __attribute__((reqd_work_group_size(MW, 1, 1)))
void kvarn_attend_records_mma(__global const float* q, __global const uchar* records,
                              __global const int* block_tables, int max_blocks,
                              __global const half* sink, __global const half* tail,
                              __global const half* sink_v, __global const half* tail_v,
                              int sink_cap, int tail_cap, __global const int4* seq_info,
                              int num_kv_heads, int q_per_kv, int num_splits, float scale,
                              int out_f16, __global void* out, __global float* part,
                              ulong num_parts, __global int* tickets, int finish) {
  __local float qs[AT_HPW * KV_D];
  __local int last_split;
#if defined(AT_MMA_EMULATE) && AT_MMA_EMULATE
  __local AtWarp warp;
  __local AtWarp* W_ = &warp;
#endif
  const int lane = (int)get_local_id(0);
#if defined(AT_MMA_EMULATE) && AT_MMA_EMULATE
  const int lane_ = lane;
#endif
  const int split = (int)get_group_id(0);
  const int hb_per_kv = q_per_kv / AT_HPW;
  const int h = (int)get_group_id(1) / hb_per_kv, hb = (int)get_group_id(1) % hb_per_kv;
  const int s = (int)get_group_id(2);
  const int hq_total = num_kv_heads * q_per_kv;
  const int h0 = h * q_per_kv + hb * AT_HPW;
  const ulong row0 = (ulong)s * hq_total + h0;

  // Rotated queries of the block's heads, and their largest magnitude.
  __global const float* src = q + row0 * KV_D;
  for (int p = lane; p < AT_HPW * KV_D; p += MW) qs[p] = src[p];
  barrier(CLK_LOCAL_MEM_FENCE);
  at_fwht_local(qs, AT_HPW, lane, MW);
  float qmax = 0.0f;
  for (int p = lane; p < AT_HPW * KV_D; p += MW) qmax = fmax(qmax, fabs(qs[p]));
  for (int m = 1; m < 32; m <<= 1) qmax = fmax(qmax, at_shfl_xor(qmax, m AT_WARP));

  AtMmaState st;
  AT_MMA_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    st.m[nb] = -INFINITY;
    st.l[nb] = 0.0f;
    AT_MMA_UNROLL
    for (int mi = 0; mi < MBV; ++mi) st.acc[nb][mi][0] = st.acc[nb][mi][1] = 0.0f;
  }
  const float scale2 = scale * AT_LOG2E;

  // The unit walk of attention_shared.cl (at_seq_unit: sink chunks, records, tail chunks),
  // written out here with the int4 fields {slot, sink_len, num_blocks, tail_len} of AtSeqInfo:
  // with the shared walk, AtSeqInfo or the shared preamble (at_group, at_load_query_rows,
  // at_store_output), in every combination tried, NVIDIA's compiler gave this kernel 200-219
  // registers instead of 153, and it ran 7-12 % slower wherever the launch fills the H200
  // (docs/perf/h200_run2/ablation). The two call sites with a literal is_rec give each inlined
  // copy of at_mma_unit one kind of unit.
  const int4 info = seq_info[s];
  const int ns = (info.y + KV_G - 1) / KV_G, nbk = info.z, nt = (info.w + KV_G - 1) / KV_G;
  const int nu = ns + nbk + nt;
  const int u0 = (int)((long)nu * split / num_splits);
  const int u1 = (int)((long)nu * (split + 1) / num_splits);
  const ulong head_row = (ulong)info.x * num_kv_heads + h;
  // The record of unit ui, or null for sink/tail units and past the split.
#define AT_UNIT_REC(ui)                                                                          \
  ((ui) >= ns && (ui) < ns + nbk && (ui) < u1                                                    \
       ? records + ((ulong)block_tables[(ulong)s * max_blocks + ((ui) - ns)] * num_kv_heads + h) * \
                       KV_RECORD_BYTES                                                           \
       : (__global const uchar*)0)
  for (int ui = u0; ui < u1; ++ui) {
    __global const uchar* rec = AT_UNIT_REC(ui);
    if (rec) {
      at_mma_unit(1, rec, sink, sink_v, KV_G, qs, qmax, scale2, &st, lane AT_WARP);
    } else {
      const int sinkside = ui < ns;
      const int j = sinkside ? ui : ui - ns - nbk;
      const ulong row = head_row * (sinkside ? sink_cap : tail_cap) + (ulong)j * KV_G;
      const int n = min(KV_G, (sinkside ? info.y : info.w) - j * KV_G);
      at_mma_unit(0, records, (sinkside ? sink : tail) + row * KV_D,
                  (sinkside ? sink_v : tail_v) + row * KV_D, n, qs, qmax, scale2, &st, lane AT_WARP);
    }
  }
#undef AT_UNIT_REC

  // ---- split result ---------------------------------------------------------------------------
  const int g = lane >> 2, t = lane & 3;
  float lt[NB];
  AT_MMA_UNROLL
  for (int nb = 0; nb < NB; ++nb) lt[nb] = at_sum_g(st.l[nb] AT_WARP);
  if (finish != AT_FINISH_DIRECT) {  // the host passes AT_FINISH_DIRECT with one split only
    AT_MMA_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      const int hh = nb * 4 + t;
      if (hh >= AT_HPW) continue;
      const ulong i = (row0 + (ulong)hh) * num_splits + split;
      if (g == 0) {
        part[i] = st.m[nb] == -INFINITY ? -INFINITY : st.m[nb] * AT_LN2;
        part[num_parts + i] = lt[nb];
      }
      AT_MMA_UNROLL
      for (int mi = 0; mi < MBV; ++mi)
        AT_MMA_UNROLL
        for (int r = 0; r < 2; ++r)
          part[2 * num_parts + i * KV_D + g * CPL + r * MBV + mi] = st.acc[nb][mi][r];
    }
    // One launch (attention_merge.cl): the last split of these rows merges them. Uniform:
    // finish is a kernel argument, at_last_split's answer is the group's.
    if (finish == AT_FINISH_MERGE &&
        at_last_split(tickets, (ulong)get_group_id(2) * get_num_groups(1) + get_group_id(1),
                      num_splits, &last_split, lane))
      at_merge_split_rows(part, num_parts, row0, AT_HPW, num_splits, 1, out_f16, out, qs, lane, MW);
    return;
  }
  // One split: normalize, rotate back, store.
  barrier(CLK_LOCAL_MEM_FENCE);
  AT_MMA_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    const int hh = nb * 4 + t;
    if (hh >= AT_HPW) continue;
    AT_MMA_UNROLL
    for (int mi = 0; mi < MBV; ++mi)
      AT_MMA_UNROLL
      for (int r = 0; r < 2; ++r)
        qs[hh * KV_D + g * CPL + r * MBV + mi] = lt[nb] > 0.0f ? st.acc[nb][mi][r] / lt[nb] : 0.0f;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  at_fwht_local(qs, AT_HPW, lane, MW);
  for (int p = lane; p < AT_HPW * KV_D; p += MW) {
    if (out_f16) vstore_half_rte(qs[p], row0 * KV_D + p, (__global half*)out);
    else ((__global float*)out)[row0 * KV_D + p] = qs[p];
  }
}
