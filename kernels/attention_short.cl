// Two programs are built from this file:
// - the short-context variant of the fused decode attention (kvarn_attend_records_short), and
// - with -DAT_PREFETCH_FP16=1, the plain fp16 decode attention (kvarn_attend_fp16: the fp16
//   baseline and the second half of the materialize path) over an uncompressed cache
//   [S][Hk][capacity][D]. Its fp16 units use the roles described below (consecutive items read
//   consecutive 16-byte pieces of a row); the tile-slot layout of attention.cl, where an item owns
//   whole tokens, reads fp16 rows with half-used sectors and runs 1.5-2.4x slower (H100, measured).
//
// Short-context variant of the fused decode attention (SPEC §4): the same launch geometry,
// arguments and partials as kernels/attention.cl, but a work-group of AT_WG = 128 items works on
// ONE unit (G tokens) at a time with all of its items: the K phase splits the channels of a tile
// over channel groups (partial dot products summed through local memory), the V phase splits
// the tokens over token groups. That is ~4x less serial work per tile than attention.cl (which
// hands every 16-item slot its own tile and walks all D channels and all G tokens serially per
// item), so a launch with few tiles per compute unit (short contexts, small batch) finishes in
// fewer dependent load rounds; with many tiles per compute unit attention.cl's register-resident
// slots win (fewer barriers and local-memory reductions per multiply-add). The host picks per
// launch (attend_prefers_short_kernel, src/opencl/attention_program.cpp) from measured H100 runs,
// e.g. Llama-3-8B ctx 1K batch 1: 30.6 us here against 57.5 us with attention.cl.
//
//   kvarn_attend_records_short  one work-group per (context split, KV head, block of query heads,
//                         sequence): streams its share of the sequence's units (fp16 sink chunks,
//                         record tiles in block-table order, fp16 tail chunks) with an online
//                         softmax; with one split it stores the output itself, otherwise it
//                         writes one partial (running max m, sum l, unnormalized output in the
//                         rotated frame) per query head and split, merged by the last split of
//                         its rows in the same launch (finish, attention_merge.cl) or by:
//   kvarn_attend_merge    one work-group per (sequence, query head): log-sum-exp merge of the
//                         splits, normalization, FWHT back to the original frame, f32/f16 store
//                         (kernels/attention_merge.cl, shared by the attention programs).
// Needs common.cl (geometry, FP_CONTRACT OFF), attention_shared.cl (FWHT, unit walk) and
// attention_merge.cl (the merge kernel).
//
// Work-group shape (AT_WG = 128 work-items; 64 below 32 KiB of local memory where 128 does not
// fit, attend_short_plan), per unit of G tokens:
//   K phase   item (tg, cg): TPI = 32/KB tokens (one 32-bit code word of a channel row) × CPI
//             channels. The item keeps its CPI code words in registers and serves every query head
//             of the KV head from them (GQA: one read of the tile), AT_RB heads per round. Per
//             round, partial dot products go through local memory (red) and are summed over the
//             CG channel groups; the zero-point term Σ q·zp_K is folded into the same partials.
//             fp16 units (sink, tail, the fp16 kernel) use the same roles with the channel group
//             fastest, so consecutive items read consecutive 16-byte pieces of a row.
//   softmax   per head: tile max by a local tree, new running max, rescale factor alpha, weights
//             p = exp(s - m) in local memory (sc).
//   V phase   item (vcb, vtg): AT_VC = 16 (8 when a group serves 8 heads) channels, one 16-, 32-
//             or 64-bit load of a token row's codes, × every VTG-th token. Codes become floats
//             scaled by s_col_V in one fma (the 2^23 offset is folded into the per-channel constant
//             -2^23·s_col_V, exact because it is a power of two); accumulators A[head][AT_VC] stay
//             in registers across all units of the split and are summed over the VTG token groups
//             once, when the split's partials are written.
// Split policy (host, attend_short_splits): about 8 work-groups per compute unit, down to one
// unit per split. Local memory: at most ~29 KiB per group (q, a 16 KiB reduction buffer, scores,
// scale vectors); below 32 KiB the host plans a smaller buffer (AT_RED) and group to fit.
// Integer codes never go through an int-to-float conversion (SPEC §7): V codes are ORed into
// 0x4B000000 (2^23 + c) and the 2^23 offset is folded into the fma with s_col_V; K codes are
// shifted into the top mantissa bits of 1.0f (1 + c/2^KB) and the constant part folded into the
// per-channel zero-point term. Cost per code: a shift and an and-or (plus the fma for V).
// Measured agreement with the CPU reference under PoCL: ~1e-5 relative (bar 1e-4).

// common.cl turns contraction off so that the codec kernels round exactly like the CPU codec.
// Attention only has to agree to ~1e-4 (SPEC §5), and its inner loops are multiply-adds: without
// contraction every one of them costs a multiply and an add, halving the fp32 rate the decode step
// is bound by at GQA ratios of 4 and more (SPEC §7). Results stay deterministic run to run.
#pragma OPENCL FP_CONTRACT ON

#ifndef AT_WG
#error "attention_short.cl: AT_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif
#ifndef AT_PREFETCH_FP16
#define AT_PREFETCH_FP16 0
#endif
#ifndef AT_HPW
#error "attention_short.cl needs AT_HPW (query heads per work-group)"
#endif
#define AT_TPI (32 / KV_KB)           // tokens per K code word
#define AT_TG (KV_G / AT_TPI)         // token groups of the K phase (= words per channel row)
#define AT_CG (AT_WG / AT_TG)         // channel groups of the K phase
#define AT_CPI (KV_D / AT_CG)         // channels per item in the K phase
#ifndef AT_RED  // floats of the shared reduction buffer: 4096 (16 KiB) from 32 KiB of local memory
#error "attention_short.cl: AT_RED (reduction buffer) must be defined by the host (program_table.cpp)"
#endif
#define AT_RB_MAX (AT_RED / (AT_CG * KV_G))
#define AT_RB (AT_RB_MAX < AT_HPW ? AT_RB_MAX : AT_HPW)  // heads per K round
// Channels per item in the V phase: 16 amortizes the per-(token, head) work (weight, sums) over
// more multiply-adds and loads a whole 32-bit word of 2-bit codes; 8 keeps the accumulators
// A[AT_HPW][AT_VC] at 64 registers when a group serves 8 heads. (8 at 4 heads as well, to cut
// registers, measured no faster for the fp16 program on the H100: GQA 4 ctx 128K batch 1 499 us
// against 509 us.)
#if AT_HPW <= 4
#define AT_VC 16
#else
#define AT_VC 8
#endif
#define AT_VCB (KV_D / AT_VC)         // channel blocks of the V phase
#define AT_VTG (AT_WG / AT_VCB)       // token groups of the V phase
#define AT_VPT (KV_G / AT_VTG)        // tokens per item in the V phase
#define AT_RV (AT_RED / (AT_VTG * KV_D))  // heads per round of the final cross-token-group sum
#define AT_VBITS (AT_VC * KV_VB)      // bits of an item's V codes in one token row (16, 32 or 64)
#define AT_KMASK ((1u << KV_KB) - 1u)
#define AT_KTOP (23 - KV_KB)          // K codes are decoded into the top mantissa bits (below)
#define AT_FB (AT_CPI % 8 == 0 ? 8 : 4)  // channels per fp16 K load (vload_half8 or 4)
#define AT_VMASK ((1u << KV_VB) - 1u)

// Items per head of the max tree: the largest power of two with AT_HPW * AT_IPH <= AT_WG.
#if AT_HPW <= 1
#define AT_IPH AT_WG
#elif AT_HPW <= 2
#define AT_IPH (AT_WG / 2)
#elif AT_HPW <= 4
#define AT_IPH (AT_WG / 4)
#elif AT_HPW <= 8
#define AT_IPH (AT_WG / 8)
#else
#error "AT_HPW must be at most 8"
#endif

#if (KV_G % AT_TPI) != 0 || (AT_WG % AT_TG) != 0 || (KV_D % AT_CG) != 0 || (AT_CPI % 4) != 0 || \
    AT_RB_MAX < 1 || (AT_WG % AT_VCB) != 0 || (KV_G % AT_VTG) != 0 || \
    AT_RV < 1 || (AT_HPW * KV_D) > 1024
#error "attention_short.cl: unsupported geometry"
#endif


// fp16 loads as one wide access: NVIDIA's OpenCL (no native fp16) may split vload_half8 on a
// __global pointer into eight 2-byte loads; loading the raw 16 (8) bytes as a uint4 (uint2) and
// converting in private memory keeps it one coalesced load. p must be 16- (8-) byte aligned: row
// starts are (rows are D >= 64 halves) and the channel offsets used here are multiples of 8 (4).
inline float8 at_load_half8(__global const half* p) {
  const uint4 raw = *(__global const uint4*)p;
  return vload_half8(0, (const __private half*)&raw);
}
inline float4 at_load_half4(__global const half* p) {
  const uint2 raw = *(__global const uint2*)p;
  return vload_half4(0, (const __private half*)&raw);
}

// Shared local memory of the work-group.
typedef struct {
  float q[AT_HPW * KV_D];     // rotated queries of the work-group's heads
  float red[AT_RED];          // partial sums (K phase), max tree, final sums
  float sc[AT_HPW * KV_G];    // scores, then softmax weights p
  float sck[KV_D], zpk[KV_D], scv[KV_D];
  float srk[KV_G], srv[KV_G], zpv[KV_G];
  float m[AT_HPW], alpha[AT_HPW];
  float lsum[AT_VTG * AT_HPW];
  int last;                   // at_last_split's answer
} AtLocal;


// One unit: scores, online-softmax update, value accumulation into A and l.
inline void at_unit(const AtUnit u, float scale, __local AtLocal* L, int lid,
                    float A[AT_HPW][AT_VC], float lpart[AT_HPW]) {
  const int is_rec = u.is_rec;
  barrier(CLK_LOCAL_MEM_FENCE);  // the previous unit's V phase is done with the local vectors
  // Scale vectors of a record as fp32 in local memory.
  if (is_rec) {
    __global const half* sck = (__global const half*)(u.rec + KV_OFF_S_COL_K);
    __global const half* zpk = (__global const half*)(u.rec + KV_OFF_ZP_K);
    __global const half* scv = (__global const half*)(u.rec + KV_OFF_S_COL_V);
    __global const half* srk = (__global const half*)(u.rec + KV_OFF_S_ROW_K);
    __global const half* srv = (__global const half*)(u.rec + KV_OFF_S_ROW_V);
    __global const half* zpv = (__global const half*)(u.rec + KV_OFF_ZP_V);
    for (int p = lid; p < KV_D; p += AT_WG) {
      L->sck[p] = vload_half(p, sck);
      L->zpk[p] = vload_half(p, zpk);
      L->scv[p] = vload_half(p, scv);
    }
    for (int p = lid; p < KV_G; p += AT_WG) {
      L->srk[p] = vload_half(p, srk);
      L->srv[p] = vload_half(p, srv);
      L->zpv[p] = vload_half(p, zpv);
    }
  }

  // ---- K phase ---------------------------------------------------------------------------------
  const int tg = lid % AT_TG, cg = lid / AT_TG;     // record role: token group fastest
  const int ftg = lid / AT_CG, fcg = lid % AT_CG;    // fp16 role: channel group fastest
  uint kw[AT_CPI];
  // The item's V data for the V phase, loaded once the K phase's multiply-adds are done, so that
  // its latency overlaps the score reduction and the softmax (7-9 barriers) instead of following
  // them: the V code words (AT_VPT tokens) of a record unit in the fused program, the V row pieces
  // (AT_VPT tokens x AT_VC halves) of an fp16 unit in the fp16 program (AT_PREFETCH_FP16), where
  // every unit is fp16. Prefetching one kind keeps the other's registers free (measured: each
  // program runs at its best with its own kind, H100).
  const int vcb = lid % AT_VCB, vtg = lid / AT_VCB;
#if AT_PREFETCH_FP16
  uint4 vraw[AT_VPT][AT_VC / 8];
#else
  uint2 vw[AT_VPT];
#endif
  if (is_rec) {
    __global const uint* codes = (__global const uint*)(u.rec + KV_OFF_K_CODES);
    #pragma unroll
    for (int j = 0; j < AT_CPI; ++j) kw[j] = codes[(cg * AT_CPI + j) * AT_TG + tg];
  }
  barrier(CLK_LOCAL_MEM_FENCE);  // scale vectors visible; previous unit done with red/sc

  #pragma unroll
  for (int rb = 0; rb < AT_HPW; rb += AT_RB) {
    float acc[AT_RB][AT_TPI];
    #pragma unroll
    for (int r = 0; r < AT_RB; ++r) {
      #pragma unroll
      for (int k = 0; k < AT_TPI; ++k) acc[r][k] = 0.0f;
    }
    if (is_rec) {
      float zacc[AT_RB];
      #pragma unroll
      for (int r = 0; r < AT_RB; ++r) zacc[r] = 0.0f;
      #pragma unroll
      for (int j = 0; j < AT_CPI; ++j) {
        const int d = cg * AT_CPI + j;
        // Code c as f = 1 + c/2^KB (c in the top mantissa bits of 1.0f): one shift and one
        // and-or per code, no subtraction. Σ_d a·c = Σ_d (2^KB·a)·f − Σ_d 2^KB·a; the second sum
        // is folded into the per-channel zero-point term (zacc), so the inner loop stays f × a.
        float f[AT_TPI];
        #pragma unroll
        for (int k = 0; k < AT_TPI; ++k) {
          const int bit = k * KV_KB;
          const uint x = bit <= AT_KTOP ? kw[j] << (AT_KTOP - bit) : kw[j] >> (bit - AT_KTOP);
          f[k] = as_float((x & (AT_KMASK << AT_KTOP)) | 0x3F800000u);
        }
        const float sk = L->sck[d] * (float)(1 << KV_KB), zk = L->zpk[d];
        #pragma unroll
        for (int r = 0; r < AT_RB; ++r) {
          if (rb + r < AT_HPW) {
            const float qv = L->q[(rb + r) * KV_D + d];
            const float a = qv * sk;
            zacc[r] += qv * zk - a;  // this channel group's share of the zero-point term
            #pragma unroll
            for (int k = 0; k < AT_TPI; ++k) acc[r][k] += a * f[k];
          }
        }
      }
      #pragma unroll
      for (int r = 0; r < AT_RB; ++r) {
        #pragma unroll
        for (int k = 0; k < AT_TPI; ++k) acc[r][k] += zacc[r];
      }
    } else {
      // fp16 rows: the item's token k is row k*TG + ftg; its channels are blocks of AT_FB
      // interleaved with the other channel groups, so the CG consecutive items of a row read
      // CG consecutive blocks (coalesced). The block's queries stay in registers over the tokens.
      #pragma unroll
      for (int jb = 0; jb < AT_CPI / AT_FB; ++jb) {
        const int d0 = (jb * AT_CG + fcg) * AT_FB;
        float qb[AT_RB][AT_FB];
        #pragma unroll
        for (int r = 0; r < AT_RB; ++r) {
          #pragma unroll
          for (int i = 0; i < AT_FB; ++i)
            qb[r][i] = rb + r < AT_HPW ? L->q[(rb + r) * KV_D + d0 + i] : 0.0f;
        }
        #pragma unroll
        for (int k = 0; k < AT_TPI; ++k) {
          const int t = k * AT_TG + ftg;
          if (t < u.n) {
            float kv[AT_FB];
#if AT_FB == 8
            const float8 x = at_load_half8(u.k + (ulong)t * KV_D + d0);
            kv[0] = x.s0; kv[1] = x.s1; kv[2] = x.s2; kv[3] = x.s3;
            kv[4] = x.s4; kv[5] = x.s5; kv[6] = x.s6; kv[7] = x.s7;
#else
            const float4 x = at_load_half4(u.k + (ulong)t * KV_D + d0);
            kv[0] = x.s0; kv[1] = x.s1; kv[2] = x.s2; kv[3] = x.s3;
#endif
            #pragma unroll
            for (int r = 0; r < AT_RB; ++r) {
              #pragma unroll
              for (int i = 0; i < AT_FB; ++i) acc[r][k] += qb[r][i] * kv[i];
            }
          }
        }
      }
    }
#if AT_PREFETCH_FP16
    if (!is_rec && rb == 0) {
      #pragma unroll
      for (int i2 = 0; i2 < AT_VPT; ++i2) {
        const int t = vtg + i2 * AT_VTG;
        #pragma unroll
        for (int i = 0; i < AT_VC / 8; ++i)
          vraw[i2][i] = t < u.n ? *(__global const uint4*)(u.v + (ulong)t * KV_D + vcb * AT_VC + 8 * i)
                                : (uint4)(0u);
      }
    }
#else
    if (is_rec && rb == 0) {
      __global const uchar* vc = u.rec + KV_OFF_V_CODES + vcb * (AT_VBITS / 8);
      #pragma unroll
      for (int i2 = 0; i2 < AT_VPT; ++i2) {
        const int t = vtg + i2 * AT_VTG;
#if AT_VBITS == 16
        vw[i2] = (uint2)(*(__global const ushort*)(vc + t * KV_V_ROW_BYTES), 0u);
#elif AT_VBITS == 32
        vw[i2] = (uint2)(*(__global const uint*)(vc + t * KV_V_ROW_BYTES), 0u);
#else
        vw[i2] = *(__global const uint2*)(vc + t * KV_V_ROW_BYTES);
#endif
      }
    }
#endif
    // Partial sums to local memory, indexed by this item's (channel group, token group) role.
    const int wcg = is_rec ? cg : fcg, wtg = is_rec ? tg : ftg;
    #pragma unroll
    for (int r = 0; r < AT_RB; ++r) {
      #pragma unroll
      for (int k = 0; k < AT_TPI; ++k) L->red[((wcg * AT_RB + r) * AT_TPI + k) * AT_TG + wtg] = acc[r][k];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    // Sum over channel groups; p enumerates (r, k, tg) with tg fastest (conflict-free reads).
    for (int p = lid; p < AT_RB * KV_G; p += AT_WG) {
      const int r = p / KV_G, k = (p / AT_TG) % AT_TPI, g = p % AT_TG;
      if (rb + r < AT_HPW) {
        float s = 0.0f;
        for (int c2 = 0; c2 < AT_CG; ++c2) s += L->red[c2 * AT_RB * KV_G + p];
        const int t = is_rec ? g * AT_TPI + k : k * AT_TG + g;
        float score;
        if (is_rec) score = L->srk[t] * s * scale;
        else score = t < u.n ? s * scale : AT_NEG_INF;
        L->sc[(rb + r) * KV_G + t] = score;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  // ---- softmax update ------------------------------------------------------------------------
  {
    const int r = lid / AT_IPH, j = lid % AT_IPH;
    float mx = AT_NEG_INF;
    if (r < AT_HPW)
      for (int t = j; t < KV_G; t += AT_IPH) mx = fmax(mx, L->sc[r * KV_G + t]);
#if KV_SUBGROUPS
    // The `subgroups` variant (subgroups.cl): per head, each subgroup's maximum of that head's
    // items into a slot [head][subgroup], then one barrier instead of 1 + log2(AT_IPH). A
    // subgroup may hold items of several heads (any size, any mapping), hence one reduction per
    // head.
    const int nsg = (int)get_num_sub_groups(), sg = (int)get_sub_group_id();
    #pragma unroll
    for (int h = 0; h < AT_HPW; ++h) {
      const float hm = sub_group_reduce_max(r == h ? mx : AT_NEG_INF);
      if (get_sub_group_local_id() == 0) L->red[h * nsg + sg] = hm;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#else
    L->red[lid] = mx;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = AT_IPH / 2; s > 0; s >>= 1) {
      if (r < AT_HPW && j < s) L->red[lid] = fmax(L->red[lid], L->red[lid + s]);
      barrier(CLK_LOCAL_MEM_FENCE);
    }
#endif
    if (lid < AT_HPW) {
#if KV_SUBGROUPS
      float head_max = L->red[lid * nsg];
      for (int i = 1; i < nsg; ++i) head_max = fmax(head_max, L->red[lid * nsg + i]);
#else
      const float head_max = L->red[lid * AT_IPH];
#endif
      const float mo = L->m[lid];
      const float mn = fmax(mo, head_max);
      L->alpha[lid] = mo == AT_NEG_INF ? 0.0f : exp(mo - mn);
      L->m[lid] = mn;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p = lid; p < AT_HPW * KV_G; p += AT_WG) L->sc[p] = exp(L->sc[p] - L->m[p / KV_G]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  // ---- V phase -------------------------------------------------------------------------------
  float az[AT_HPW];
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    const float al = L->alpha[r];
    lpart[r] *= al;
    az[r] = 0.0f;
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) A[r][i] *= al;
  }
  if (is_rec) {
    float s[AT_VC], nz[AT_VC];
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) {
      s[i] = L->scv[vcb * AT_VC + i];
      nz[i] = -8388608.0f * s[i];
    }
#if AT_PREFETCH_FP16
    __global const uchar* vc = u.rec + KV_OFF_V_CODES + vcb * (AT_VBITS / 8);
    for (int t = vtg; t < KV_G; t += AT_VTG) {
#if AT_VBITS == 16
      const uint2 w = (uint2)(*(__global const ushort*)(vc + t * KV_V_ROW_BYTES), 0u);
#elif AT_VBITS == 32
      const uint2 w = (uint2)(*(__global const uint*)(vc + t * KV_V_ROW_BYTES), 0u);
#else
      const uint2 w = *(__global const uint2*)(vc + t * KV_V_ROW_BYTES);
#endif
#else
    #pragma unroll
    for (int i2 = 0; i2 < AT_VPT; ++i2) {
      const int t = vtg + i2 * AT_VTG;
      const uint2 w = vw[i2];
#endif
      float cs[AT_VC];
      #pragma unroll
      for (int i = 0; i < AT_VC; ++i) {
        const uint word = (i * KV_VB) < 32 ? w.x : w.y;
        const uint code = (word >> ((i * KV_VB) % 32)) & AT_VMASK;
        cs[i] = fma(as_float(0x4B000000u | code), s[i], nz[i]);
      }
      const float srv = L->srv[t], zpv = L->zpv[t];
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) {
        const float p = L->sc[r * KV_G + t];
        const float wgt = p * srv;
        lpart[r] += p;
        az[r] += p * zpv;
        #pragma unroll
        for (int i = 0; i < AT_VC; ++i) A[r][i] += wgt * cs[i];
      }
    }
    #pragma unroll
    for (int r = 0; r < AT_HPW; ++r) {
      #pragma unroll
      for (int i = 0; i < AT_VC; ++i) A[r][i] += s[i] * az[r];
    }
  } else {
#if AT_PREFETCH_FP16
    #pragma unroll
    for (int i2 = 0; i2 < AT_VPT; ++i2) {
      const int t = vtg + i2 * AT_VTG;
      if (t >= u.n) continue;
#else
    for (int t = vtg; t < u.n; t += AT_VTG) {
#endif
      float cs[AT_VC];
      #pragma unroll
      for (int i = 0; i < AT_VC; i += 8) {
#if AT_PREFETCH_FP16
        const uint4 raw = vraw[i2][i / 8];
        const float8 vv = vload_half8(0, (const __private half*)&raw);
#else
        const float8 vv = at_load_half8(u.v + (ulong)t * KV_D + vcb * AT_VC + i);
#endif
        cs[i] = vv.s0; cs[i + 1] = vv.s1; cs[i + 2] = vv.s2; cs[i + 3] = vv.s3;
        cs[i + 4] = vv.s4; cs[i + 5] = vv.s5; cs[i + 6] = vv.s6; cs[i + 7] = vv.s7;
      }
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) {
        const float p = L->sc[r * KV_G + t];
        lpart[r] += p;
        #pragma unroll
        for (int i = 0; i < AT_VC; ++i) A[r][i] += p * cs[i];
      }
    }
  }
}

inline void at_begin(__local AtLocal* L, int lid, float A[AT_HPW][AT_VC], float lpart[AT_HPW]) {
  if (lid < AT_HPW) L->m[lid] = AT_NEG_INF;
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    lpart[r] = 0.0f;
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) A[r][i] = 0.0f;
  }
}

// Sums the per-item accumulators over the V token groups and writes the split's result: with
// finish == AT_FINISH_DIRECT (one split) the output itself (normalized, rotated back when
// rotate_back, f32/f16); otherwise the partials pm/pl [(s*Hq + hq)*NS + split], pacc [...][D]
// (rotated frame, unnormalized), merged by the last split of these rows in this launch when
// finish == AT_FINISH_MERGE (attention_merge.cl).
inline void at_split_result(__local AtLocal* L, int lid, float A[AT_HPW][AT_VC],
                            float lpart[AT_HPW], AtGroup g, int num_splits, __global float* part,
                            ulong num_parts, __global int* tickets, int finish,
                            int rotate_back, int out_f16, __global void* out) {
  const int vcb = lid % AT_VCB, vtg = lid / AT_VCB;
  const int direct = finish == AT_FINISH_DIRECT;  // the host passes it with one split only
  __global float* pacc = part + 2 * num_parts;
  __local float* o = L->q;  // [AT_HPW][KV_D]: the output (direct) or the merge's; q is done
  barrier(CLK_LOCAL_MEM_FENCE);  // last unit's readers of red/sc/q are done
  if (vcb == 0) {
    #pragma unroll
    for (int r = 0; r < AT_HPW; ++r) L->lsum[vtg * AT_HPW + r] = lpart[r];
  }
  #pragma unroll
  for (int r0 = 0; r0 < AT_HPW; r0 += AT_RV) {
    #pragma unroll
    for (int r = 0; r < AT_RV; ++r) {
      if (r0 + r < AT_HPW) {
        #pragma unroll
        for (int i = 0; i < AT_VC; ++i)
          L->red[(vtg * AT_RV + r) * KV_D + vcb * AT_VC + i] = A[r0 + r][i];
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int p = lid; p < AT_RV * KV_D; p += AT_WG) {
      const int r = p / KV_D, d = p % KV_D;
      if (r0 + r < AT_HPW) {
        float sum = 0.0f;
        for (int c = 0; c < AT_VTG; ++c) sum += L->red[(c * AT_RV + r) * KV_D + d];
        if (direct) o[(r0 + r) * KV_D + d] = sum;
        else pacc[at_part(g.row0 + (ulong)(r0 + r), g.split, num_splits) * KV_D + d] = sum;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (direct) {  // uniform: num_splits is a kernel argument
    for (int p = lid; p < AT_HPW * KV_D; p += AT_WG) {
      const int r = p / KV_D;
      float l = 0.0f;
      for (int c = 0; c < AT_VTG; ++c) l += L->lsum[c * AT_HPW + r];
      o[p] = l > 0.0f ? o[p] / l : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (rotate_back) at_fwht_local(o, AT_HPW, lid, AT_WG);
    at_store_output(o, AT_HPW, g.row0, out_f16, out, lid, AT_WG);
    return;
  }
  if (lid < AT_HPW) {
    float l = 0.0f;
    for (int c = 0; c < AT_VTG; ++c) l += L->lsum[c * AT_HPW + lid];
    const ulong i = at_part(g.row0 + (ulong)lid, g.split, num_splits);
    part[i] = L->m[lid];
    part[num_parts + i] = l;
  }
  if (finish != AT_FINISH_MERGE) return;  // uniform: a kernel argument
  const int last = at_last_split(tickets, (ulong)get_group_id(2) * get_num_groups(1) + get_group_id(1),
                                 num_splits, &L->last, lid);
  if (!last) return;  // uniform: the group's answer
  at_merge_split_rows(part, num_parts, g.row0, AT_HPW, num_splits, rotate_back, out_f16, out, o,
                      lid, AT_WG);
}

// Both kernels start alike: the group's place in the launch, its queries in L->q (rotated when
// rotate_q), an empty state.
inline void at_start(__local AtLocal* L, __global const float* q, int rotate_q,
                     int num_kv_heads, int q_per_kv, float A[AT_HPW][AT_VC],
                     float lpart[AT_HPW], AtGroup* g) {
  const int lid = (int)get_local_id(0);
  at_group(num_kv_heads, q_per_kv, g);
  at_load_query_rows(q, g->row0, L->q, lid, AT_WG, rotate_q);
  at_begin(L, lid, A, lpart);
}

// ... and go on alike: the group's split of the sequence's units, then its partials. (The
// sequence's info is read only after the queries: read before, it stays live across the query
// load and costs registers.)
inline void at_attend_split(__local AtLocal* L, const AtPools* pools, AtSeqInfo info, AtGroup g,
                            int num_splits, float scale, float A[AT_HPW][AT_VC],
                            float lpart[AT_HPW], __global float* part, ulong num_parts,
                            __global int* tickets, int finish, int rotate_back, int out_f16,
                            __global void* out) {
  const int lid = (int)get_local_id(0);
  const int n = at_units(info);
  const int u0 = at_split_first(n, g.split, num_splits);
  const int u1 = at_split_first(n, g.split + 1, num_splits);
  for (int ui = u0; ui < u1; ++ui) {
    AtUnit u;
    at_seq_unit(pools, info, g.s, g.h, ui, &u);
    at_unit(u, scale, L, lid, A, lpart);
  }
  at_split_result(L, lid, A, lpart, g, num_splits, part, num_parts, tickets, finish,
                  rotate_back, out_f16, out);
}

// Fused decode attention from the records. Launch: local (AT_WG, 1, 1), global
// (num_splits * AT_WG, Hk * (R / AT_HPW), S). seq_info holds one AtSeqInfo per sequence; split
// c takes units [n*c/NS, n*(c+1)/NS) of the sequence's n units (at_seq_unit).
__kernel __attribute__((reqd_work_group_size(AT_WG, 1, 1)))
void kvarn_attend_records_short(__global const float* q, __global const uchar* records,
                                __global const int* block_tables, int max_blocks,
                                __global const half* sink, __global const half* tail,
                                __global const half* sink_v, __global const half* tail_v,
                                int sink_cap, int tail_cap, __global const int4* seq_info,
                                int num_kv_heads, int q_per_kv, int num_splits, float scale,
                                int out_f16, __global void* out, __global float* part,
                                ulong num_parts, __global int* tickets, int finish) {
  __local AtLocal L;
  float A[AT_HPW][AT_VC], lpart[AT_HPW];
  AtGroup g;
  at_start(&L, q, 1, num_kv_heads, q_per_kv, A, lpart, &g);
  const AtPools pools = {records, block_tables, max_blocks, sink, tail, sink_v, tail_v,
                         sink_cap, tail_cap, num_kv_heads};
  AtSeqInfo info;
  at_seq_info(seq_info, g.s, &info);
  at_attend_split(&L, &pools, info, g, num_splits, scale, A, lpart, part, num_parts, tickets,
                  finish, 1, out_f16, out);
}

// Plain fp16 decode attention (the fp16 baseline and the second half of the materialize path)
// over fp16 rows [S][Hk][capacity][D], every unit fp16; built with -DAT_PREFETCH_FP16=1.
// Launch: local (AT_WG, 1, 1), global (num_splits * AT_WG, Hk * (R / AT_HPW), S); splits from
// attend_fp16_splits. rotate_q: the rows are in the rotated frame (a materialized KVarN cache), so
// q is rotated first (the merge rotates the output back).
// The cache is walked as a fused context of sink rows only: sequence s is pool slot s, its
// seq_len rows its sink (no records are read, so the record pointers are placeholders).
__kernel __attribute__((reqd_work_group_size(AT_WG, 1, 1)))
void kvarn_attend_fp16(__global const float* q, __global const half* k, __global const half* v,
                       int capacity, __global const int* seq_lens, int num_kv_heads, int q_per_kv,
                       int num_splits, float scale, int rotate_q, int out_f16,
                       __global void* out, __global float* part, ulong num_parts,
                       __global int* tickets, int finish) {
  __local AtLocal L;
  float A[AT_HPW][AT_VC], lpart[AT_HPW];
  AtGroup g;
  at_start(&L, q, rotate_q, num_kv_heads, q_per_kv, A, lpart, &g);
  const AtPools pools = {(__global const uchar*)k, seq_lens, 0, k, k, v, v, capacity, capacity,
                         num_kv_heads};
  const AtSeqInfo info = {g.s, seq_lens[g.s], 0, 0};
  at_attend_split(&L, &pools, info, g, num_splits, scale, A, lpart, part, num_parts, tickets,
                  finish, rotate_q, out_f16, out);
}
