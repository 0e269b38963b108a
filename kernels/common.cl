// Shared definitions of every libkvarn_cl kernel (OpenCL C 1.2, no extensions).
//
// Geometry comes from kvarn_cl::RecordLayout as -D build options (src/opencl/codec_program.cpp):
//   KV_D, KV_G, KV_KB, KV_VB                 head_dim, tile tokens, key bits, value bits
//   KV_RECORD_BYTES, KV_K_ROW_BYTES, KV_V_ROW_BYTES
//   KV_OFF_K_CODES, KV_OFF_S_COL_K, KV_OFF_ZP_K, KV_OFF_S_ROW_K,
//   KV_OFF_V_CODES, KV_OFF_S_COL_V, KV_OFF_S_ROW_V, KV_OFF_ZP_V   byte offsets inside a record
//   KV_ROT_SCALE                             1/sqrt(D) as the CPU codec rounds it (hex float)
//
// fp16 data is only touched through vload_half/vstore_half (core OpenCL); all arithmetic is fp32.
// Contraction of a*b+c into fma is off so that the decode expressions round exactly like the CPU
// reference (x86-64 C++ without -ffp-contract=fast evaluates them as separate mul and add).
#pragma OPENCL FP_CONTRACT OFF

#if !defined(KV_D) || !defined(KV_G) || !defined(KV_KB) || !defined(KV_VB) || !defined(KV_ROT_SCALE)
#error "libkvarn_cl kernels need the record geometry as -D options (KV_D, KV_G, KV_KB, KV_VB, ...)"
#endif

// Work-items that share one row of D channels, 8 contiguous channels each.
#define KV_D_BLOCKS (KV_D / 8)

// KV_UNROLL=1 (set by the host for GPU devices only, src/opencl/codec_program.cpp) fully unrolls
// the loops over a work-item's private tile values. A GPU keeps a private array in registers only
// when every index is a compile-time constant; otherwise it lives in (slow, off-chip) stack
// memory. CPU compilers (PoCL) do not need it and compile several times slower with it.
#if defined(KV_UNROLL) && KV_UNROLL
#define KV_UNROLL_LOOP _Pragma("unroll")
#else
#define KV_UNROLL_LOOP
#endif

// Eight fp16 values <-> one 16-byte word of global memory. Devices without native fp16 (NVIDIA's
// OpenCL) may split vload_half8/vstore_half8 on __global pointers into eight 2-byte accesses;
// moving the 16 bytes as one uint4 and converting in private memory keeps the access one wide,
// coalesced load or store. The conversions are still vload_half/vstore_half (SPEC §6), and the
// store rounds to nearest even like vstore_half8_rte. p must be 16-byte aligned.
inline float8 load_half8_wide(__global const uint4* p) {
  const uint4 raw = *p;
  return vload_half8(0, (const __private half*)&raw);
}

inline void store_half8_wide(float8 v, __global uint4* p) {
  uint4 raw;
  vstore_half8_rte(v, 0, (__private half*)&raw);
  *p = raw;
}

// A b-bit code as a float without an int-to-float conversion (SPEC §7): OR it into the mantissa
// of 2^23 and subtract 2^23. Exact for any code below 2^23.
inline float code_to_float(uint c) { return as_float(0x4B000000u | c) - 8388608.0f; }

inline void unpack8(float8 f, float v[8]) {
  v[0] = f.s0; v[1] = f.s1; v[2] = f.s2; v[3] = f.s3;
  v[4] = f.s4; v[5] = f.s5; v[6] = f.s6; v[7] = f.s7;
}

inline float8 pack8(const float v[8]) {
  return (float8)(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
}

// Stages h = 1, 2, 4 of the radix-2 fast Walsh–Hadamard transform on 8 contiguous channels.
// The butterflies and their order are those of kvarn_cl::fwht_inplace, so results are bitwise
// the same as the CPU codec's.
inline void fwht8(float v[8]) {
  #pragma unroll
  for (int h = 1; h < 8; h <<= 1) {
    #pragma unroll
    for (int i = 0; i < 8; i += 2 * h) {
      for (int j = i; j < i + h; ++j) {
        const float a = v[j];
        const float b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
    }
  }
}

// The FWHT stages of stride 8 .. KV_D/2 on a row in local memory (the strides 1, 2, 4 are done
// in registers by fwht8 before): KV_D/2 butterflies per stage, 4 per work-item; consecutive
// work-items take consecutive pairs so local-memory accesses stay conflict-free. Every work-item
// of the row's group must call it (barriers inside).
inline void fwht_local_stages(__local float* row, int x) {
  for (int h = 8; h < KV_D; h <<= 1) {  // not unrolled: barriers inside
    #pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int p = k * KV_D_BLOCKS + x;
      const int a = ((p & ~(h - 1)) << 1) | (p & (h - 1));
      const float ya = row[a];
      const float yb = row[a + h];
      row[a] = ya + yb;
      row[a + h] = ya - yb;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}

// Full FWHT (with the 1/sqrt(D) scale) of one row of KV_D channels held by KV_D_BLOCKS
// work-items, work-item x holding channels [8x, 8x+8) in v. `row` is KV_D floats of local memory
// private to this row. Every work-item of the group must call it (it contains barriers); rows
// that carry no data simply transform zeros.
inline void fwht_row(float v[8], __local float* row, int x) {
  fwht8(v);
  #pragma unroll
  for (int i = 0; i < 8; ++i) row[x * 8 + i] = v[i];
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_local_stages(row, x);
  #pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = row[x * 8 + i] * KV_ROT_SCALE;
  barrier(CLK_LOCAL_MEM_FENCE);  // the caller may reuse `row` right away
}

// fwht_row with the same butterflies in the same order (bitwise the same results), moving each
// work-item's 8 channels to and from local memory as two float4 accesses instead of eight
// scalar ones: scalar accesses at a stride of 8 floats hit the same local-memory bank 8 ways on
// GPUs. `row` must be 16-byte aligned (KV_D floats per row keep it so).
inline void fwht_row_wide(float v[8], __local float* row, int x) {
  fwht8(v);
  __local float4* row4 = (__local float4*)row;
  row4[2 * x] = (float4)(v[0], v[1], v[2], v[3]);
  row4[2 * x + 1] = (float4)(v[4], v[5], v[6], v[7]);
  barrier(CLK_LOCAL_MEM_FENCE);
  fwht_local_stages(row, x);
  const float4 lo = row4[2 * x];
  const float4 hi = row4[2 * x + 1];
  v[0] = lo.x * KV_ROT_SCALE; v[1] = lo.y * KV_ROT_SCALE; v[2] = lo.z * KV_ROT_SCALE;
  v[3] = lo.w * KV_ROT_SCALE; v[4] = hi.x * KV_ROT_SCALE; v[5] = hi.y * KV_ROT_SCALE;
  v[6] = hi.z * KV_ROT_SCALE; v[7] = hi.w * KV_ROT_SCALE;
  barrier(CLK_LOCAL_MEM_FENCE);  // the caller may reuse `row` right away
}
