// The warp-level primitives of the matrix-unit kernels (attention_mma.cl, mma_probe.cl):
// fp16 pair conversions, byte permute, warp shuffles and the m16n8k16 fp16 -> fp32 mma, plus
// helpers built on them. On NVIDIA they are inline PTX (accepted by NVIDIA's OpenCL C compiler
// since the asm statements are GCC-style); with -DAT_MMA_EMULATE=1 they are emulated in portable
// OpenCL C through local memory, with one work-group of 32 items standing in for the warp, so
// PoCL can run and test the kernels' index and softmax logic.
// Every primitive must be called by all 32 work-items together (uniform control flow).
// Lane numbering is the mma fragment layout's: lane = 4g + t, g = lane / 4, t = lane % 4.

#ifndef MW
#error "mma_primitives.cl: MW (the warp: 32) must be defined by the host (program_table.cpp)"
#endif
#if MW != 32
#error "mma_primitives.cl: MW must be 32 (the mma.sync fragment layout)"
#endif

// Loops over private arrays are unrolled on the GPU (registers need compile-time indices); the
// emulation runs on CPU compilers, where unrolling around its barriers only slows the build.
#if defined(AT_MMA_EMULATE) && AT_MMA_EMULATE
#define AT_MMA_UNROLL
#else
#define AT_MMA_UNROLL _Pragma("unroll")
#endif
#if defined(AT_MMA_EMULATE) && AT_MMA_EMULATE
// Emulation: local memory stands in for the warp's registers. Every call is made by all 32
// work-items together (the kernel's control flow is uniform over the work-group).
typedef struct {
  uint a[MW][4];
  uint b[MW][2];
  uint x[MW];
} AtWarp;
#define AT_WARP_ARG , __local AtWarp* W_, int lane_
#define AT_WARP , W_, lane_

inline uint at_pack_h2(float lo, float hi AT_WARP_ARG) {
  uint u;
  vstore_half_rte(lo, 0, (__private half*)&u);
  vstore_half_rte(hi, 1, (__private half*)&u);
  return u;
}
inline float at_h2_lo(uint u AT_WARP_ARG) { return vload_half(0, (__private const half*)&u); }
inline float at_h2_hi(uint u AT_WARP_ARG) { return vload_half(1, (__private const half*)&u); }
// x*m + a on both fp16 halves (used only where the result is an exact small integer).
inline uint at_h2_fma(uint x, uint m, uint a AT_WARP_ARG) {
  return at_pack_h2(at_h2_lo(x AT_WARP) * at_h2_lo(m AT_WARP) + at_h2_lo(a AT_WARP),
                    at_h2_hi(x AT_WARP) * at_h2_hi(m AT_WARP) + at_h2_hi(a AT_WARP) AT_WARP);
}
inline uint at_prmt(uint a, uint b, uint sel AT_WARP_ARG) {
  const ulong v = ((ulong)b << 32) | a;
  uint r = 0;
  AT_MMA_UNROLL
  for (int k = 0; k < 4; ++k) r |= (uint)((v >> (8 * ((sel >> (4 * k)) & 7u))) & 0xFFu) << (8 * k);
  return r;
}
inline uint at_shfl_idx(uint v, int src AT_WARP_ARG) {
  W_->x[lane_] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint r = W_->x[src & 31];
  barrier(CLK_LOCAL_MEM_FENCE);
  return r;
}
inline float at_shfl_xor(float v, int m AT_WARP_ARG) {
  return as_float(at_shfl_idx(as_uint(v), lane_ ^ m AT_WARP));
}
inline float at_frag_a(__local AtWarp* W_, int r, int k) {
  const uint u = W_->a[(r % 8) * 4 + (k % 8) / 2][(r / 8) + 2 * (k / 8)];
  return vload_half(k & 1, (__private const half*)&u);
}
inline float at_frag_b(__local AtWarp* W_, int k, int n) {
  const uint u = W_->b[n * 4 + (k % 8) / 2][k / 8];
  return vload_half(k & 1, (__private const half*)&u);
}
// c (16x8, fp32) += A (16x16 fp16, row) * B (16x8 fp16, col), m16n8k16 fragment layout.
inline void at_mma(float c[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1 AT_WARP_ARG) {
  W_->a[lane_][0] = a0; W_->a[lane_][1] = a1; W_->a[lane_][2] = a2; W_->a[lane_][3] = a3;
  W_->b[lane_][0] = b0; W_->b[lane_][1] = b1;
  barrier(CLK_LOCAL_MEM_FENCE);
  const int g = lane_ >> 2, t = lane_ & 3;
  AT_MMA_UNROLL
  for (int e = 0; e < 4; ++e) {
    const int r = g + 8 * (e >> 1), n = 2 * t + (e & 1);
    float s = 0.0f;
    AT_MMA_UNROLL
    for (int k = 0; k < 16; ++k) s += at_frag_a(W_, r, k) * at_frag_b(W_, k, n);
    c[e] += s;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
}
inline void at_fence_gpu(void) { mem_fence(CLK_GLOBAL_MEM_FENCE); }
#else
#define AT_WARP_ARG
#define AT_WARP
// A device-scope memory fence (CUDA's __threadfence()): the instruction of attention_merge.cl's
// at_fence_device in the matrix-unit program (-DAT_PTX_FENCE=1), built here as well so that the
// capability probe fails, and the matrix-unit path stays off, where a compiler refuses it.
inline void at_fence_gpu(void) {
  uint z;
  asm volatile("{ membar.gl; mov.b32 %0, 0; }" : "=r"(z));
}
inline uint at_pack_h2(float lo, float hi) {
  uint r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
inline float at_h2_lo(uint u) {
  float f;
  asm("{ .reg .f16 l, h; mov.b32 {l, h}, %1; cvt.f32.f16 %0, l; }" : "=f"(f) : "r"(u));
  return f;
}
inline float at_h2_hi(uint u) {
  float f;
  asm("{ .reg .f16 l, h; mov.b32 {l, h}, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "r"(u));
  return f;
}
inline uint at_h2_fma(uint x, uint m, uint a) {
  uint r;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(x), "r"(m), "r"(a));
  return r;
}
inline uint at_prmt(uint a, uint b, uint sel) {
  uint r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
}
inline uint at_shfl_idx(uint v, int src) {
  uint r;
  asm volatile("shfl.sync.idx.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(r) : "r"(v), "r"(src));
  return r;
}
inline float at_shfl_xor(float v, int m) {
  float r;
  asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(m));
  return r;
}
inline void at_mma(float c[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
  // Not volatile: a pure function of its operands, so the compiler may schedule loads and
  // other work around it (it is only ever reached by the whole warp together).
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif

// ---- helpers built on them ------------------------------------------------------------------

// Sum / max over the 8 lanes of one t (lanes t, t+4, ..., t+28): every one gets the result.
inline float at_sum_g(float v AT_WARP_ARG) {
  v += at_shfl_xor(v, 4 AT_WARP);
  v += at_shfl_xor(v, 8 AT_WARP);
  return v + at_shfl_xor(v, 16 AT_WARP);
}
inline float at_max_g(float v AT_WARP_ARG) {
  v = fmax(v, at_shfl_xor(v, 4 AT_WARP));
  v = fmax(v, at_shfl_xor(v, 8 AT_WARP));
  return fmax(v, at_shfl_xor(v, 16 AT_WARP));
}

// x as an fp16 pair: {high part, low part} (low = x - high, rounded), both to nearest even.
inline uint at_split_h2(float x AT_WARP_ARG) {
  const uint h = at_pack_h2(x, x AT_WARP);
  const float hf = at_h2_lo(h AT_WARP);
  return at_pack_h2(hf, x - hf AT_WARP);
}
// The pair {x0, x1} as fp16: its high parts (part 0) or its low parts (part 1).
inline uint at_part_h2(float x0, float x1, int part AT_WARP_ARG) {
  const uint h = at_pack_h2(x0, x1 AT_WARP);
  if (!part) return h;
  return at_pack_h2(x0 - at_h2_lo(h AT_WARP), x1 - at_h2_hi(h AT_WARP) AT_WARP);
}

// 8x8 transpose of fp16 pairs held in the C-fragment layout (lane 4g+t holds row g, columns 2t,
// 2t+1): afterwards lane 4g+t holds {M[2t][g], M[2t+1][g]}, the B-fragment layout.
inline uint at_transpose8(uint x, int lane AT_WARP_ARG) {
  const int g = lane >> 2, t = lane & 3;
  const uint va = at_shfl_idx(x, 8 * t + (g >> 1) AT_WARP);
  const uint vb = at_shfl_idx(x, 8 * t + 4 + (g >> 1) AT_WARP);
  return at_prmt(va, vb, (g & 1) ? 0x7632u : 0x5410u AT_WARP);
}

// 2^k with max_abs * 2^k in [2^13, 2^14) (clamped for zero or extreme inputs), so operands of at
// most max_abs fit fp16 with room for the low part.
inline float at_pow2_scale(float max_abs) {
  const int e = (int)((as_uint(max_abs) >> 23) & 0xFFu) - 127;
  const int k = clamp(13 - e, -120, 120);
  return as_float((uint)(k + 127) << 23);
}

// Field f (bits f*b .. f*b+b-1) of a 16-bit chunk of two rows, in the low and high halves of a
// pair made by at_prmt, as exact fp16 integers: OR into the mantissa of 1024 gives
// 1024 + c*2^p, one fp16 fma maps it to c.
#define AT_FIELD_H2(P, f, b)                                                                     \
  at_h2_fma(((((P) >> (8 * (((f) * (b)) / 8))) & ((((1u << (b)) - 1u) << (((f) * (b)) % 8)) *  \
                                                   0x00010001u)) | 0x64006400u),               \
            (uint)(((15 - (((f) * (b)) % 8)) << 10) * 0x00010001u),                             \
            (uint)((0x8000u | ((25u - (((f) * (b)) % 8)) << 10)) * 0x00010001u) AT_WARP)

// A lane's span of one code row (bits of nbits <= 128 at byte address p): 32-bit words.
inline void at_load_span(__global const uchar* p, int nbits, uint* w) {
  if (nbits <= 16) {
    w[0] = *(__global const ushort*)p;
  } else if (nbits == 32) {
    w[0] = *(__global const uint*)p;
  } else if (nbits == 64) {
    const uint2 v = *(__global const uint2*)p;
    w[0] = v.x; w[1] = v.y;
  } else {
    const uint4 v = *(__global const uint4*)p;
    w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
  }
}

// The 16-bit chunk c of two spans as one pair (row a low, row b high).
inline uint at_chunk_pair(const uint* wa, const uint* wb, int c AT_WARP_ARG) {
  return at_prmt(wa[c / 2], wb[c / 2], (c & 1) ? 0x7632u : 0x5410u AT_WARP);
}

// The A fragment of one mma from the code spans of four rows (K: channels c0..c0+3; V: the four
// tokens of the lane's k indices): a0/a1 pair rows 0 and 1, a2/a3 rows 2 and 3; a0/a2 take field
// f0 (fragment row g), a1/a3 field f1 (row g+8); b bits per code. All compile-time after unrolling.
inline void at_code_fragment(const uint* w0, const uint* w1, const uint* w2, const uint* w3, int f0,
                             int f1, int b, uint a[4] AT_WARP_ARG) {
  const uint p00 = at_chunk_pair(w0, w1, (f0 * b) / 16 AT_WARP);
  const uint p01 = at_chunk_pair(w0, w1, (f1 * b) / 16 AT_WARP);
  const uint p10 = at_chunk_pair(w2, w3, (f0 * b) / 16 AT_WARP);
  const uint p11 = at_chunk_pair(w2, w3, (f1 * b) / 16 AT_WARP);
  a[0] = AT_FIELD_H2(p00, f0 % (16 / b), b);
  a[1] = AT_FIELD_H2(p01, f1 % (16 / b), b);
  a[2] = AT_FIELD_H2(p10, f0 % (16 / b), b);
  a[3] = AT_FIELD_H2(p11, f1 % (16 / b), b);
}

// n 32-bit words at p (n a multiple of 4, 16-byte aligned), as wide loads.
inline void at_load_words(__global const void* p, int n, uint* w) {
  AT_MMA_UNROLL
  for (int i = 0; i < n; i += 4) {
    const uint4 v = ((__global const uint4*)p)[i / 4];
    w[i] = v.x; w[i + 1] = v.y; w[i + 2] = v.z; w[i + 3] = v.w;
  }
}

// n fp16 values at p (n a multiple of 8, 16-byte aligned) as floats.
inline void at_load_halves(__global const void* p, int n, float* out) {
  AT_MMA_UNROLL
  for (int i = 0; i < n; i += 8) {
    const uint4 raw = ((__global const uint4*)p)[i / 8];
    const float8 x = vload_half8(0, (const __private half*)&raw);
    out[i] = x.s0; out[i + 1] = x.s1; out[i + 2] = x.s2; out[i + 3] = x.s3;
    out[i + 4] = x.s4; out[i + 5] = x.s5; out[i + 6] = x.s6; out[i + 7] = x.s7;
  }
}

