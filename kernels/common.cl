// Shared definitions of every libkvarn_cl kernel of a record geometry (OpenCL C 1.2, no
// extensions).
//
// Geometry comes from kvarn_cl::RecordLayout as -D build options (src/opencl/codec_program.cpp;
// which programs take which options: src/opencl/program_table.cpp):
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

// KV_UNROLL=1 (set by the host for GPU devices only, src/opencl/program_table.cpp) fully unrolls
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
