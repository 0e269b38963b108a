// Decode attention (one query token per sequence) in one or two kernels, flash-decoding style
// (SPEC §4):
//   kvarn_attend_records  one work-group per (context split, KV head, block of query heads,
//                         sequence): streams its share of the sequence's units (fp16 sink chunks,
//                         record tiles in block-table order, fp16 tail chunks) with an online
//                         softmax. With one split it normalizes, rotates back and stores the
//                         output itself (one launch per step); otherwise it writes one partial
//                         (running max m, sum l, unnormalized output in the rotated frame) per
//                         query head and split;
//   kvarn_attend_merge    one work-group per (sequence, query head): log-sum-exp merge of the
//                         splits, normalization, FWHT back to the original frame, f32/f16 store;
//                         or the same merge by the last split of each group's rows, in the split
//                         kernel's launch (finish, attention_merge.cl).
// The fp16 baseline (attention_short.cl built with AT_PREFETCH_FP16) has a shape suited to fp16 rows;
// here fp16 rows occur only as the sink and tail units of a sequence. Launches with few tiles per
// compute unit (short contexts, small batch) take attention_short.cl instead (host policy in
// attention_program.hpp): this kernel's slots walk a whole tile serially per item, which is
// throughput-friendly but too long a chain of dependent loads when there is nothing to overlap.
// Needs common.cl (its -D geometry only), attention_shared.cl (FWHT, unit walk) and
// attention_merge.cl (the merge kernel).
//
// Work-group shape: AT_WG = 64 work-items (32 or 16 below 32 KiB of local memory where 64 does not
// fit, attend_tile_slots_work_group) in AT_NS slots of AT_IPS items; a step hands each
// slot its own unit of G tokens (a record tile or fp16 rows), so a step covers AT_NS units.
// Every slot keeps its own running max, so the items of a slot never wait for another slot's
// scores; the slots are merged once, when the split ends. Within a slot, item j:
//   K phase   owns the AT_KTPI tokens of one 32-bit code word of every channel row (tokens
//             j*KTPI ..) and loops over the channels (all of them, or 1/AT_KS when a row has
//             fewer words than the slot has items), accumulating AT_KTPI x AT_HPW scores in
//             registers: one 4-byte load and KTPI code decodes serve KTPI*HPW multiply-adds, the
//             per-channel factors of all heads come as one float4 local read (broadcast), and
//             no partial sum crosses work-items (except the AT_KS channel groups, once a tile).
//   softmax   the token-group maxima of the slot go through local memory (one float4 per item);
//             each item computes the weights of its own tokens; the V constants of the tile
//             (Σ p·zp_V, Σ p·s_row_V) are summed the same way.
//   V phase   owns AT_VC channels (one 8-, 16- or 32-bit load of a token row's codes) and loops
//             over the unit's tokens, the weights of all heads again one float4 local read.
//             The per-channel scale s_col_V of the tile is applied once per tile (B -> A).
// Three barriers per step (four with AT_KS > 1). Code words are loaded a round of AT_BATCH
// channels (tokens) ahead of their use, so every item keeps global reads in flight.
//
// Integer codes never go through an int-to-float conversion (SPEC §7): a code c is shifted into
// the top mantissa bits of 1.0f, giving f = 1 + c/2^bits exactly (a shift and an and-or), and the
// constant part is folded into per-tile constants: Σ a·c = 2^bits·(Σ a·f − Σ a).
// Local memory: about 21 KiB at D = G = 128 (28 KiB at most, for k2 presets at D = 256); 8 KiB
// more with AT_ALOCAL (below).

// common.cl turns contraction off so that the codec kernels round exactly like the CPU codec.
// Attention only has to agree to ~1e-4 (SPEC §5), and its inner loops are multiply-adds: without
// contraction every one of them costs a multiply and an add, halving the fp32 rate the decode step
// is bound by at GQA ratios of 4 and more (SPEC §7). Results stay deterministic run to run.
#pragma OPENCL FP_CONTRACT ON

#ifndef AT_WG
#error "attention.cl: AT_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif
#ifndef AT_NS
#error "attention.cl: AT_NS (units per step) must be defined by the host (program_table.cpp)"
#endif
#ifndef AT_HPW
#error "attention.cl needs AT_HPW (query heads per work-group)"
#endif
#if AT_HPW < 1 || AT_HPW > 4
#error "AT_HPW must be 1 to 4 (per-channel factors of all heads are one float4)"
#endif
#define AT_KTPI (32 / KV_KB)                                 // tokens per K code word
#define AT_KW (KV_G / AT_KTPI)                               // K words per channel row
#define AT_IPS (AT_KW > KV_D / 8 ? AT_KW : KV_D / 8)         // items per slot
#define AT_KS (AT_IPS / AT_KW)                               // channel groups of the K phase
#define AT_KCH (KV_D / AT_KS)                                // channels per K item
#define AT_VC (KV_D / AT_IPS)                                // channels per V item (4 or 8)
#define AT_VBITS (AT_VC * KV_VB)                             // bits of a V item's codes per token
#define AT_KTOP (23 - KV_KB)                                 // K code -> top mantissa bits
#define AT_VTOP (23 - KV_VB)
#define AT_KMASK (((1u << KV_KB) - 1u) << AT_KTOP)
#define AT_VMASK (((1u << KV_VB) - 1u) << AT_VTOP)

// AT_DENORM=1 (host: devices whose fp32 arithmetic keeps denormals, src/opencl/denormal_decode.cpp)
// decodes a code with one AND instead of a shift and an and-or: a code c masked in place at bit
// p of a word is the denormal float c·2^(p−149), exact, and a multiply-add by it is exact-input
// arithmetic on devices that do not flush denormals. Codes whose bits reach past the mantissa
// (p + bits > 23) come from the word shifted right by AT_DN_SHIFT once per word. The factors that
// multiply the codes carry 2^AT_DN_SV (V weights) or 2^kexp (K factors, chosen per work-group from
// the queries' magnitude) so that the products are normal floats, and each token's (channel's)
// sum is brought back by the exact power of two 2^(149 − S − p). No "1 +" bias is added, so
// nothing is subtracted afterwards either.
#ifndef AT_DENORM
#define AT_DENORM 0
#endif
#define AT_DN_SHIFT 12
#define AT_DN_SV 111  // V weights p·s_row_V < 2^16 (fp16 scale, p ≤ 1): 2^111 keeps them < 2^127
// Bit position of code k (b bits) in the word it is masked from, and whether that is the word
// shifted right by AT_DN_SHIFT.
#define AT_DN_SHIFTED(bit, b) ((bit) + (b) > 23)
#define AT_DN_POS(bit, b) (AT_DN_SHIFTED(bit, b) ? (bit) - AT_DN_SHIFT : (bit))
// 2^e as a float, for e in [-126, 127] (exact; no pow/ldexp call).
#define AT_POW2(e) as_float((uint)((e) + 127) << 23)

// AT_ALOCAL=1 (host: 4 query heads per group where the plan's local memory allows it, for
// launches whose splits run 3 steps or more; attend_tile_slots_accumulators_local, chosen per
// launch) keeps each item's V accumulators A (4 heads x AT_VC channels: 32 floats) in local
// memory instead of registers: they are read and written once per step, while the K and V
// phases, which need the registers, run between. On the H100 that cut NVIDIA's register count
// from 217 to 159 per item (6 work-groups per compute unit instead of 4) and made GQA 4 decodes
// 6-12 % faster at batch 8 to 64, but 9-12 % slower at batch 1, where each split runs one or two
// steps (docs/PERFORMANCE.md), hence the per-launch choice; with 1 query head (8 accumulators)
// it was slower, so those keep them in registers.
#ifndef AT_ALOCAL
#define AT_ALOCAL 0
#endif

#if AT_NS != AT_WG / AT_IPS
#error "attention.cl: the host's AT_NS is not AT_WG / AT_IPS"
#endif
#if (AT_IPS % AT_KW) != 0 || (AT_KCH % 8) != 0 || (AT_VC != 4 && AT_VC != 8) || AT_NS < 1 || \
    (AT_WG % AT_IPS) != 0 || (AT_VBITS != 8 && AT_VBITS != 16 && AT_VBITS != 32) || \
    (AT_KTPI != 8 && AT_KTPI != 16)
#error "attention.cl: unsupported geometry"
#endif

// The channel (K) and token (V) loops run in rounds of AT_BATCH with the next round's code
// words loaded before the current round is used; private arrays are indexed only by fully
// unrolled loops with compile-time trip counts (a GPU keeps them in registers only then).
// AT_UNROLL (host: GPU devices) also unrolls the fp16 token loop of the V phase.
// Channels (K) or tokens (V) per round of loads. 16 halves the rounds per tile against 8 (each
// round exposes some load latency where few groups share a compute unit: short contexts) at the
// cost of 16 more registers per item. With the accumulators in local memory (AT_ALOCAL) 8: on the
// H100 that build needs 159 registers against 161 at 16, and was 2-10 % faster at GQA 4 from
// batch 32 on, in the same session (docs/perf/h100_2026-12-07b/sweep).
#if AT_ALOCAL
#define AT_BATCH 8
#else
#define AT_BATCH 16
#endif
#if (AT_KCH % AT_BATCH) != 0 || (KV_G % AT_BATCH) != 0
#error "attention.cl: AT_BATCH must divide the channels per K item and G"
#endif


// fp16 loads as one wide access: NVIDIA's OpenCL (no native fp16) may split vload_halfN on a
// __global pointer into 2-byte loads; loading the raw bytes as a uint4 (uint2) and converting in
// private memory keeps it one coalesced load. p must be 16- (8-) byte aligned: record fields
// and row starts are, and the offsets used here are multiples of 8 (4) halves.
inline void at_halves8(__global const void* p, float out[8]) {
  const uint4 raw = *(__global const uint4*)p;
  const float8 x = vload_half8(0, (const __private half*)&raw);
  out[0] = x.s0; out[1] = x.s1; out[2] = x.s2; out[3] = x.s3;
  out[4] = x.s4; out[5] = x.s5; out[6] = x.s6; out[7] = x.s7;
}
inline void at_halves4(__global const void* p, float out[4]) {
  const uint2 raw = *(__global const uint2*)p;
  const float4 x = vload_half4(0, (const __private half*)&raw);
  out[0] = x.s0; out[1] = x.s1; out[2] = x.s2; out[3] = x.s3;
}
// n = 4, 8 or 16 halves (a compile-time constant after inlining).
inline void at_halves(__global const void* p, int n, float* out) {
  if (n == 4) {
    at_halves4(p, out);
  } else {
    at_halves8(p, out);
    if (n == 16) at_halves8((__global const uchar*)p + 16, out + 8);
  }
}

// The V codes of token t for the item whose codes start at p (rows of KV_V_ROW_BYTES).
inline uint at_vword(__global const uchar* p, int t) {
#if AT_VBITS == 8
  return p[t * KV_V_ROW_BYTES];
#elif AT_VBITS == 16
  return *(__global const ushort*)(p + t * KV_V_ROW_BYTES);
#else
  return *(__global const uint*)(p + t * KV_V_ROW_BYTES);
#endif
}

inline void at_unpack4(float4 v, float a[4]) { a[0] = v.s0; a[1] = v.s1; a[2] = v.s2; a[3] = v.s3; }
// The first AT_HPW values of a as a float4 of heads (the rest 0).
inline float4 at_pack4(const float* a) {
  float4 v = (float4)(0.0f);
  v.s0 = a[0];
#if AT_HPW > 1
  v.s1 = a[1];
#endif
#if AT_HPW > 2
  v.s2 = a[2];
#endif
#if AT_HPW > 3
  v.s3 = a[3];
#endif
  return v;
}

// Shared local memory of the work-group. Head r of a float4 is component r (unused heads 0).
typedef struct {
  float4 q[KV_D];                  // rotated queries, one float4 of heads per channel
  float4 ak[AT_NS * KV_D];         // per slot: 2^KB·q·s_col_K (records); scratch at start and end
  float4 w[AT_NS * KV_G];          // per slot and token: p·s_row_V (records) or p (fp16)
  float4 cp[AT_NS * AT_IPS];       // per slot: partial K constants Σ q·zp_K − Σ ak
  float4 mx[AT_NS * AT_KW];        // per slot: maxima of the token groups
  float4 yp[AT_NS * AT_KW];        // per slot: partial V constants Σ p·zp_V/2^VB − Σ w
#if AT_KS > 1
  float4 sp[AT_NS * (AT_KS - 1) * KV_G];  // partial scores of channel groups 1 .. KS-1
#endif
#if AT_ALOCAL
  float4 a[AT_VC * AT_WG];         // V accumulators A: [channel][item], one float4 of heads
#endif
  float4 ms[AT_NS];                // final merge: running max of every slot
  float4 lp[AT_WG];                // final merge: softmax sums of every item
  int last;                        // at_last_split's answer
} AtLocal;


// Loads (and rotates) the queries of the group's AT_HPW rows into L->q, transposed to one float4
// of heads per channel.
inline void at_load_queries(__global const float* q, ulong row0, __local AtLocal* L, int lid) {
  __local float* rows = (__local float*)L->ak;  // AT_HPW rows of D floats (scratch)
  at_load_query_rows(q, row0, rows, lid, AT_WG, 1);
  float qmax = 0.0f;  // AT_DENORM: the largest |q| of the item's channels (at_denorm_kexp)
  for (int d = lid; d < KV_D; d += AT_WG) {
    float4 v = (float4)(0.0f);
    v.s0 = rows[d];
#if AT_HPW > 1
    v.s1 = rows[KV_D + d];
#endif
#if AT_HPW > 2
    v.s2 = rows[2 * KV_D + d];
#endif
#if AT_HPW > 3
    v.s3 = rows[3 * KV_D + d];
#endif
    L->q[d] = v;
    const float4 a = fabs(v);
    qmax = fmax(qmax, fmax(fmax(a.s0, a.s1), fmax(a.s2, a.s3)));
  }
#if AT_DENORM
  ((__local float*)L->lp)[lid] = qmax;  // lp is free until at_finish
#endif
  barrier(CLK_LOCAL_MEM_FENCE);
}

// AT_DENORM: the exponent kexp of the K factors q·s_col_K·2^kexp. |q| < 2^(e+1) with e = ilogb of
// the group's largest |q| and |s_col_K| < 2^16 (fp16) keep the factors below 2^127; every item
// computes the same value from the items' maxima (at_load_queries leaves them in L->lp; fmax
// skips NaN, which makes the scores NaN anyway). Clamped so that 2^kexp and the scores' way
// back, 2^(149 − kexp − p) with p ≤ 20, stay normal floats.
inline int at_denorm_kexp(__local const AtLocal* L) {
  __local const float* item_max = (__local const float*)L->lp;
  float qmax = 0.0f;
  for (int i = 0; i < AT_WG; ++i) qmax = fmax(qmax, item_max[i]);
  if (!(qmax > 0.0f && qmax <= FLT_MAX)) return qmax > 0.0f ? 22 : 127;  // 0, inf or NaN
  return clamp(110 - ilogb(qmax), 22, 127);
}

// Per-item running state, in registers across the steps of a split (A in local memory with
// AT_ALOCAL, through AT_A_LOAD / AT_A_STORE): the V accumulators of the item's channels (rotated
// frame, relative to the slot's running max), the slot's running max (the same in every item of
// the slot) and the softmax sum over the item's own tokens.
// AT_STATE declares it as parameters, AT_STATE_VARS as the kernel's variables, AT_STATE_ARGS
// passes it on; with AT_ALOCAL there is no register array A at all.
#if AT_ALOCAL
#define AT_STATE float m[AT_HPW], float l[AT_HPW]
#define AT_STATE_VARS float m[AT_HPW], l[AT_HPW]
#define AT_STATE_ARGS m, l
#define AT_A_LOAD(i, x) at_unpack4(L->a[(i) * AT_WG + lid], x)
#define AT_A_STORE(i, x) L->a[(i) * AT_WG + lid] = at_pack4(x)
#else
#define AT_STATE float A[AT_HPW][AT_VC], float m[AT_HPW], float l[AT_HPW]
#define AT_STATE_VARS float A[AT_HPW][AT_VC], m[AT_HPW], l[AT_HPW]
#define AT_STATE_ARGS A, m, l
#define AT_A_LOAD(i, x) for (int r_ = 0; r_ < AT_HPW; ++r_) x[r_] = A[r_][i]
#define AT_A_STORE(i, x) for (int r_ = 0; r_ < AT_HPW; ++r_) A[r_][i] = x[r_]
#endif

inline void at_begin(__local AtLocal* L, int lid, AT_STATE) {
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    m[r] = AT_NEG_INF;
    l[r] = 0.0f;
  }
#if AT_ALOCAL
  #pragma unroll
  for (int i = 0; i < AT_VC; ++i) {
    float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    AT_A_STORE(i, zero);
  }
#else
  // The registers build zeroes A (and at_finish stores it) head-major, straight from the array:
  // through AT_A_STORE / AT_A_LOAD (channel-major) it was 5-7 % slower at batch 1 to 4 on the
  // H100 (1 x 128K 162 against 154 us, 4 x 128K 477 against 446; docs/PERFORMANCE.md).
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) A[r][i] = 0.0f;
  }
#endif
}

// One step: every slot processes its unit u (scores, online-softmax update, value accumulation).
// All items of the group must call it (barriers).
// kexp: the exponent of the K factors' scaling with AT_DENORM (at_denorm_kexp), unused otherwise.
inline void at_step(const AtUnit u, float scale, int kexp, __local AtLocal* L, int lid, AT_STATE) {
  const int slot = lid / AT_IPS, j = lid % AT_IPS;
  const int tw = j % AT_KW, ks = j / AT_KW;
  const int is_rec = u.is_rec;

  // Loads are issued early, a batch ahead of their use, so that each work-item keeps global
  // reads in flight while it computes (a step has few work-groups per compute unit to hide
  // latency with): the first K batch and the item's per-token scales before the first barrier,
  // the first V batch before the softmax, each next batch before the current one is used.
  __global const uint* kcodes = (__global const uint*)(u.rec + KV_OFF_K_CODES) + tw;
  __global const uchar* vcodes = u.rec + KV_OFF_V_CODES + j * (AT_VBITS / 8);
  const int d_begin = ks * AT_KCH;
  uint kn[AT_BATCH];
  float srk[AT_KTPI], srv[AT_KTPI], zpv[AT_KTPI];
  if (is_rec) {
    #pragma unroll
    for (int i = 0; i < AT_BATCH; ++i) kn[i] = kcodes[(d_begin + i) * AT_KW];
    if (ks == 0) {
      at_halves(u.rec + KV_OFF_S_ROW_K + 2 * tw * AT_KTPI, AT_KTPI, srk);
      at_halves(u.rec + KV_OFF_S_ROW_V + 2 * tw * AT_KTPI, AT_KTPI, srv);
      at_halves(u.rec + KV_OFF_ZP_V + 2 * tw * AT_KTPI, AT_KTPI, zpv);
    }
  }

  // ---- per-tile K factors: item j takes channels [j*VC, j*VC + VC) -------------------------
  if (is_rec) {
    const int d0 = j * AT_VC;
    float sk[AT_VC], zk[AT_VC];
    at_halves(u.rec + KV_OFF_S_COL_K + 2 * d0, AT_VC, sk);
    at_halves(u.rec + KV_OFF_ZP_K + 2 * d0, AT_VC, zk);
    float4 c = (float4)(0.0f);
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) {
      const float4 qv = L->q[d0 + i];
#if AT_DENORM
      const float4 a = qv * (sk[i] * AT_POW2(kexp));
      c += qv * zk[i];
#else
      const float4 a = qv * (sk[i] * (float)(1 << KV_KB));
      c += qv * zk[i] - a;
#endif
      L->ak[slot * KV_D + d0 + i] = a;
    }
    L->cp[slot * AT_IPS + j] = c;
  }
  barrier(CLK_LOCAL_MEM_FENCE);

  // ---- K phase: raw dot products of the item's tokens over its channels --------------------
  float acc[AT_KTPI][AT_HPW];
  #pragma unroll
  for (int k = 0; k < AT_KTPI; ++k) {
    #pragma unroll
    for (int r = 0; r < AT_HPW; ++r) acc[k][r] = 0.0f;
  }
  if (is_rec) {
    // Σ_d ak[d]·f[d][t] with f = 1 + c/2^KB, AT_BATCH channels per round.
    __local const float4* ak = L->ak + slot * KV_D;
    for (int d0 = d_begin; d0 < d_begin + AT_KCH; d0 += AT_BATCH) {
      uint kc[AT_BATCH];
      #pragma unroll
      for (int i = 0; i < AT_BATCH; ++i) kc[i] = kn[i];
      if (d0 + AT_BATCH < d_begin + AT_KCH) {
        #pragma unroll
        for (int i = 0; i < AT_BATCH; ++i) kn[i] = kcodes[(d0 + AT_BATCH + i) * AT_KW];
      }
      #pragma unroll
      for (int i = 0; i < AT_BATCH; ++i) {
        float a[4];
        at_unpack4(ak[d0 + i], a);
#if AT_DENORM
        const uint hi = kc[i] >> AT_DN_SHIFT;
#endif
        #pragma unroll
        for (int k = 0; k < AT_KTPI; ++k) {
          const int bit = k * KV_KB;
#if AT_DENORM
          const uint x = AT_DN_SHIFTED(bit, KV_KB) ? hi : kc[i];
          const float f = as_float(x & (((1u << KV_KB) - 1u) << AT_DN_POS(bit, KV_KB)));
#else
          const uint x = bit <= AT_KTOP ? kc[i] << (AT_KTOP - bit) : kc[i] >> (bit - AT_KTOP);
          const float f = as_float((x & AT_KMASK) | 0x3F800000u);
#endif
          #pragma unroll
          for (int r = 0; r < AT_HPW; ++r) acc[k][r] += a[r] * f;
        }
      }
    }
  } else if (u.n > 0) {
    // fp16 rows: blocks of 8 channels, the block's queries in registers over the tokens.
    for (int d0 = ks * AT_KCH; d0 < (ks + 1) * AT_KCH; d0 += 8) {
      float qb[8][4];
      #pragma unroll
      for (int i = 0; i < 8; ++i) at_unpack4(L->q[d0 + i], qb[i]);
      #pragma unroll
      for (int k = 0; k < AT_KTPI; ++k) {
        const int t = tw * AT_KTPI + k;
        if (t < u.n) {
          float kv[8];
          at_halves8(u.k + (ulong)t * KV_D + d0, kv);
          #pragma unroll
          for (int i = 0; i < 8; ++i) {
            #pragma unroll
            for (int r = 0; r < AT_HPW; ++r) acc[k][r] += qb[i][r] * kv[i];
          }
        }
      }
    }
  }
#if AT_KS > 1
  // Channel groups 1..KS-1 hand their partial dot products to group 0 (token group fastest).
  if (ks > 0) {
    #pragma unroll
    for (int k = 0; k < AT_KTPI; ++k)
      L->sp[((slot * (AT_KS - 1) + ks - 1) * AT_KTPI + k) * AT_KW + tw] =
at_pack4(acc[k]);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (ks == 0) {
    for (int g = 0; g < AT_KS - 1; ++g) {
      #pragma unroll
      for (int k = 0; k < AT_KTPI; ++k) {
        float a[4];
        at_unpack4(L->sp[((slot * (AT_KS - 1) + g) * AT_KTPI + k) * AT_KW + tw], a);
        #pragma unroll
        for (int r = 0; r < AT_HPW; ++r) acc[k][r] += a[r];
      }
    }
  }
#endif

  // ---- scores of the item's own tokens (items with ks == 0) and the slot maxima -------------
  const int owner = ks == 0;
  float sc[AT_KTPI][AT_HPW];
  if (owner) {
    float mloc[4] = {AT_NEG_INF, AT_NEG_INF, AT_NEG_INF, AT_NEG_INF};
    if (is_rec) {
      float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int g = 0; g < AT_IPS; ++g) {
        float cg[4];
        at_unpack4(L->cp[slot * AT_IPS + g], cg);
        #pragma unroll
        for (int r = 0; r < AT_HPW; ++r) c[r] += cg[r];
      }
      #pragma unroll
      for (int k = 0; k < AT_KTPI; ++k) {
        #pragma unroll
        for (int r = 0; r < AT_HPW; ++r) {
#if AT_DENORM
          const float back = AT_POW2(149 - kexp - AT_DN_POS(k * KV_KB, KV_KB));
          sc[k][r] = srk[k] * (acc[k][r] * back + c[r]) * scale;
#else
          sc[k][r] = srk[k] * (acc[k][r] + c[r]) * scale;
#endif
          mloc[r] = fmax(mloc[r], sc[k][r]);
        }
      }
    } else {
      #pragma unroll
      for (int k = 0; k < AT_KTPI; ++k) {
        const int valid = tw * AT_KTPI + k < u.n;
        #pragma unroll
        for (int r = 0; r < AT_HPW; ++r) {
          sc[k][r] = valid ? acc[k][r] * scale : AT_NEG_INF;
          mloc[r] = fmax(mloc[r], sc[k][r]);
        }
      }
    }
    L->mx[slot * AT_KW + tw] = (float4)(mloc[0], mloc[1], mloc[2], mloc[3]);
  }
  barrier(CLK_LOCAL_MEM_FENCE);

  // ---- online softmax: every item of the slot computes the same new max and rescale --------
  uint vn[AT_BATCH];
  if (is_rec) {
    #pragma unroll
    for (int i = 0; i < AT_BATCH; ++i) vn[i] = at_vword(vcodes, i);
  }
  float alpha[AT_HPW];
  {
    float mt[4] = {AT_NEG_INF, AT_NEG_INF, AT_NEG_INF, AT_NEG_INF};
    for (int g = 0; g < AT_KW; ++g) {
      float v[4];
      at_unpack4(L->mx[slot * AT_KW + g], v);
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) mt[r] = fmax(mt[r], v[r]);
    }
    #pragma unroll
    for (int r = 0; r < AT_HPW; ++r) {
      const float mn = fmax(m[r], mt[r]);
      alpha[r] = m[r] == AT_NEG_INF ? 0.0f : exp(m[r] - mn);
      m[r] = mn;
    }
  }
  if (owner) {
    float lsum[4] = {0.0f, 0.0f, 0.0f, 0.0f}, y[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    #pragma unroll
    for (int k = 0; k < AT_KTPI; ++k) {
      float wt[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) {
        // m == -inf: nothing valid seen yet in this slot (then every score is -inf too).
        const float p = m[r] == AT_NEG_INF ? 0.0f : exp(sc[k][r] - m[r]);
        lsum[r] += p;
        if (is_rec) {
#if AT_DENORM
          wt[r] = p * srv[k] * AT_POW2(AT_DN_SV);
          y[r] += p * zpv[k];
#else
          wt[r] = p * srv[k];
          y[r] += p * zpv[k] * (1.0f / (float)(1 << KV_VB)) - wt[r];
#endif
        } else {
          wt[r] = p;
        }
      }
      L->w[slot * KV_G + tw * AT_KTPI + k] = (float4)(wt[0], wt[1], wt[2], wt[3]);
    }
    #pragma unroll
    for (int r = 0; r < AT_HPW; ++r) l[r] = l[r] * alpha[r] + lsum[r];
    L->yp[slot * AT_KW + tw] = (float4)(y[0], y[1], y[2], y[3]);
  }
  barrier(CLK_LOCAL_MEM_FENCE);

  // ---- V phase: item j takes channels [j*VC, j*VC + VC) of every token of the unit ----------
  // The accumulators A take the new max (alpha) where they are cheapest to touch: in registers
  // before the V loops, so that alpha is not live through them (on the H100 the rescale at the end
  // made the registers build 2-3 % slower at batch 1 to 4, docs/PERFORMANCE.md); in local memory
  // at the end of the step, in the one read and write of A the step makes (AT_RESCALED).
#if AT_ALOCAL
#define AT_RESCALED(x, r) ((x) * alpha[r])
#else
#define AT_RESCALED(x, r) (x)
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) A[r][i] *= alpha[r];
  }
#endif
  __local const float4* wl = L->w + slot * KV_G;
  // B: this unit's sums, added to the rescaled A once at the end of the step.
  float B[AT_HPW][AT_VC];
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) B[r][i] = 0.0f;
  }
  if (is_rec) {
    // B = Σ_t w_t·f[t][d] with f = 1 + c/2^VB; then A += 2^VB·s_col_V·(B + Y).
    float scv[AT_VC];
    at_halves(u.rec + KV_OFF_S_COL_V + 2 * j * AT_VC, AT_VC, scv);
    for (int t0 = 0; t0 < KV_G; t0 += AT_BATCH) {
      uint vc[AT_BATCH];
      #pragma unroll
      for (int b = 0; b < AT_BATCH; ++b) vc[b] = vn[b];
      if (t0 + AT_BATCH < KV_G) {
        #pragma unroll
        for (int b = 0; b < AT_BATCH; ++b) vn[b] = at_vword(vcodes, t0 + AT_BATCH + b);
      }
      #pragma unroll
      for (int b = 0; b < AT_BATCH; ++b) {
        float wt[4];
        at_unpack4(wl[t0 + b], wt);
#if AT_DENORM
        const uint hi = vc[b] >> AT_DN_SHIFT;
#endif
        #pragma unroll
        for (int i = 0; i < AT_VC; ++i) {
          const int bit = i * KV_VB;
#if AT_DENORM
          const uint x = AT_DN_SHIFTED(bit, KV_VB) ? hi : vc[b];
          const float f = as_float(x & (((1u << KV_VB) - 1u) << AT_DN_POS(bit, KV_VB)));
#else
          const uint x = bit <= AT_VTOP ? vc[b] << (AT_VTOP - bit) : vc[b] >> (bit - AT_VTOP);
          const float f = as_float((x & AT_VMASK) | 0x3F800000u);
#endif
          #pragma unroll
          for (int r = 0; r < AT_HPW; ++r) B[r][i] += wt[r] * f;
        }
      }
    }
    float y[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int g = 0; g < AT_KW; ++g) {
      float v[4];
      at_unpack4(L->yp[slot * AT_KW + g], v);
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) y[r] += v[r];
    }
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) {
#if AT_DENORM
      const float back = AT_POW2(149 - AT_DN_SV - AT_DN_POS(i * KV_VB, KV_VB));
      float a[4];
      AT_A_LOAD(i, a);
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r)
        a[r] = AT_RESCALED(a[r], r) + scv[i] * (B[r][i] * back + y[r]);
      AT_A_STORE(i, a);
#else
      const float s = scv[i] * (float)(1 << KV_VB);
      float a[4];
      AT_A_LOAD(i, a);
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) a[r] = AT_RESCALED(a[r], r) + s * (B[r][i] + y[r]);
      AT_A_STORE(i, a);
#endif
    }
  } else {
#if defined(AT_UNROLL) && AT_UNROLL
    #pragma unroll 4
#endif
    for (int t = 0; t < u.n; ++t) {
      float v[AT_VC], wt[4];
      at_halves(u.v + (ulong)t * KV_D + j * AT_VC, AT_VC, v);
      at_unpack4(wl[t], wt);
      #pragma unroll
      for (int i = 0; i < AT_VC; ++i) {
        #pragma unroll
        for (int r = 0; r < AT_HPW; ++r) B[r][i] += wt[r] * v[i];
      }
    }
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) {
      float a[4];
      AT_A_LOAD(i, a);
      #pragma unroll
      for (int r = 0; r < AT_HPW; ++r) a[r] = AT_RESCALED(a[r], r) + B[r][i];
      AT_A_STORE(i, a);
    }
  }
}

#undef AT_RESCALED

// Merges the slots (log-sum-exp) and writes the split's result: with one split (direct) the
// normalized output, rotated back when rotate_back, as f32 or f16 (out [S*Hq][D]); otherwise
// the partials pm/pl [(s*Hq + hq)*NS + split] and pacc [...][D] (rotated frame, unnormalized),
// merged by the last split of these rows when finish == AT_FINISH_MERGE (at_last_split,
// attention_merge.cl). finish == AT_FINISH_DIRECT (one split only): the output itself.
inline void at_finish(__local AtLocal* L, int lid, AT_STATE, ulong row0, int split, int num_splits,
                      __global float* part, ulong num_parts, int rotate_back, int out_f16,
                      __global void* out, __global int* tickets, int finish) {
  const int slot = lid / AT_IPS, j = lid % AT_IPS;
  barrier(CLK_LOCAL_MEM_FENCE);  // the last step's readers of w / ak are done
  __local float* acc = (__local float*)L->ak;  // [slot][head][D]
#if AT_ALOCAL
  #pragma unroll
  for (int i = 0; i < AT_VC; ++i) {
    float a[4];
    AT_A_LOAD(i, a);
    #pragma unroll
    for (int r = 0; r < AT_HPW; ++r) acc[(slot * AT_HPW + r) * KV_D + j * AT_VC + i] = a[r];
  }
#else
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    #pragma unroll
    for (int i = 0; i < AT_VC; ++i) acc[(slot * AT_HPW + r) * KV_D + j * AT_VC + i] = A[r][i];
  }
#endif
  float lv[4] = {0.0f, 0.0f, 0.0f, 0.0f}, mv[4] = {AT_NEG_INF, AT_NEG_INF, AT_NEG_INF, AT_NEG_INF};
  #pragma unroll
  for (int r = 0; r < AT_HPW; ++r) {
    lv[r] = l[r];
    mv[r] = m[r];
  }
  L->lp[lid] = (float4)(lv[0], lv[1], lv[2], lv[3]);
  if (j == 0) L->ms[slot] = (float4)(mv[0], mv[1], mv[2], mv[3]);
  barrier(CLK_LOCAL_MEM_FENCE);

  // Every item computes the merged max, the slot factors and the total sum (same order, same
  // result in every item).
  float mx[4] = {AT_NEG_INF, AT_NEG_INF, AT_NEG_INF, AT_NEG_INF}, fs[AT_NS][4], lt[4];
  for (int s = 0; s < AT_NS; ++s) {
    float v[4];
    at_unpack4(L->ms[s], v);
    #pragma unroll
    for (int r = 0; r < 4; ++r) mx[r] = fmax(mx[r], v[r]);
  }
  #pragma unroll
  for (int r = 0; r < 4; ++r) lt[r] = 0.0f;
  #pragma unroll
  for (int s = 0; s < AT_NS; ++s) {
    float v[4];
    at_unpack4(L->ms[s], v);
    #pragma unroll
    for (int r = 0; r < 4; ++r) fs[s][r] = v[r] == AT_NEG_INF ? 0.0f : exp(v[r] - mx[r]);
    float ls[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int g = 0; g < AT_IPS; ++g) {
      float x[4];
      at_unpack4(L->lp[s * AT_IPS + g], x);
      #pragma unroll
      for (int r = 0; r < 4; ++r) ls[r] += x[r];
    }
    #pragma unroll
    for (int r = 0; r < 4; ++r) lt[r] += fs[s][r] * ls[r];
  }

  const int direct = finish == AT_FINISH_DIRECT;  // the host passes it with one split only
  __local float* o = (__local float*)L->q;  // direct: [head][D] normalized output (q is done)
  for (int p = lid; p < AT_HPW * KV_D; p += AT_WG) {
    const int r = p / KV_D, d = p % KV_D;
    float sum = 0.0f;
    #pragma unroll
    for (int s = 0; s < AT_NS; ++s) {
      float f = fs[s][0];
#if AT_HPW > 1
      if (r == 1) f = fs[s][1];
#endif
#if AT_HPW > 2
      if (r == 2) f = fs[s][2];
#endif
#if AT_HPW > 3
      if (r == 3) f = fs[s][3];
#endif
      sum += f * acc[(s * AT_HPW + r) * KV_D + d];
    }
    if (direct) {
      float lr = lt[0];
#if AT_HPW > 1
      if (r == 1) lr = lt[1];
#endif
#if AT_HPW > 2
      if (r == 2) lr = lt[2];
#endif
#if AT_HPW > 3
      if (r == 3) lr = lt[3];
#endif
      o[p] = lr > 0.0f ? sum / lr : 0.0f;
    } else {
      part[2 * num_parts + at_part(row0 + (ulong)r, split, num_splits) * KV_D + d] = sum;
    }
  }
  if (!direct) {
    if (lid < AT_HPW) {
      const ulong i = at_part(row0 + (ulong)lid, split, num_splits);
      float mr = mx[0], lr = lt[0];
      if (lid == 1) { mr = mx[1]; lr = lt[1]; }
      if (lid == 2) { mr = mx[2]; lr = lt[2]; }
      if (lid == 3) { mr = mx[3]; lr = lt[3]; }
      part[i] = mr;
      part[num_parts + i] = lr;
    }
    // Uniform: finish is a kernel argument, at_last_split's answer the group's.
    if (finish == AT_FINISH_MERGE &&
        at_last_split(tickets, (ulong)get_group_id(2) * get_num_groups(1) + get_group_id(1),
                      num_splits, &L->last, lid))
      at_merge_split_rows(part, num_parts, row0, AT_HPW, num_splits, rotate_back, out_f16, out, o,
                          lid, AT_WG);
    return;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (rotate_back) at_fwht_local(o, AT_HPW, lid, AT_WG);
  at_store_output(o, AT_HPW, row0, out_f16, out, lid, AT_WG);
}

// Fused decode attention from the records. Launch: local (AT_WG, 1, 1), global
// (num_splits * AT_WG, Hk * (R / AT_HPW), S). seq_info holds one AtSeqInfo per sequence; split
// c takes units [n*c/NS, n*(c+1)/NS) of the sequence's n units (at_seq_unit), AT_NS per step.
// finish (attention_merge.cl): AT_FINISH_DIRECT (one split) stores the output; AT_FINISH_PARTIALS
// writes the split partials to part (for kvarn_attend_merge); AT_FINISH_MERGE writes them and the
// last split of each group's rows merges them in this launch (tickets: one int per work-group of
// a split, zero before the launch).
__kernel __attribute__((reqd_work_group_size(AT_WG, 1, 1)))
void kvarn_attend_records(__global const float* q, __global const uchar* records,
                          __global const int* block_tables, int max_blocks,
                          __global const half* sink, __global const half* tail,
                          __global const half* sink_v, __global const half* tail_v,
                          int sink_cap, int tail_cap, __global const int4* seq_info,
                          int num_kv_heads, int q_per_kv, int num_splits, float scale,
                          int out_f16, __global void* out, __global float* part,
                          ulong num_parts, __global int* tickets, int finish) {
  __local AtLocal L;
  const int lid = (int)get_local_id(0);
  AtGroup g;
  at_group(num_kv_heads, q_per_kv, &g);
  const AtPools pools = {records, block_tables, max_blocks, sink, tail, sink_v, tail_v,
                         sink_cap, tail_cap, num_kv_heads};

  at_load_queries(q, g.row0, &L, lid);
#if AT_DENORM
  const int kexp = at_denorm_kexp(&L);
#else
  const int kexp = 0;
#endif
  AT_STATE_VARS;
  at_begin(&L, lid, AT_STATE_ARGS);

  AtSeqInfo info;
  at_seq_info(seq_info, g.s, &info);
  const int n = at_units(info);
  const int u0 = at_split_first(n, g.split, num_splits), u1 = at_split_first(n, g.split + 1, num_splits);
  const int slot = lid / AT_IPS;
  for (int base = u0; base < u1; base += AT_NS) {
    const int ui = base + slot;  // no unit for this slot in the last step when ui >= u1
    AtUnit u;
    if (ui < u1) at_seq_unit(&pools, info, g.s, g.h, ui, &u);
    else at_no_unit(&pools, &u);
    at_step(u, scale, kexp, &L, lid, AT_STATE_ARGS);
  }
  at_finish(&L, lid, AT_STATE_ARGS, g.row0, g.split, num_splits, part, num_parts, 1, out_f16, out,
            tickets, finish);
}
