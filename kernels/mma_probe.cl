// Capability probe of the matrix-unit kernels (src/opencl/matrix_units.cpp): one warp runs every
// primitive of mma_primitives.cl once on known inputs; the host compares the results with exact
// values. A device whose compiler rejects the inline PTX fails the build instead, and either
// failure keeps it on the portable kernels.
//   out[0, 128)    the m16n8k16 product D = A·B in fragment order (lane*4 + e)
//   out[128, 192)  at_transpose8 of M[r][c] = 8r + c: lane's low and high half
//   out[192, 256)  AT_FIELD_H2 of field 3 of 4-bit codes in a prmt-made pair: low and high half
//   out[256, 288)  at_sum_g of the lane numbers; out[288, 320) at_split_h2 high + low of 1/3
__kernel __attribute__((reqd_work_group_size(MW, 1, 1)))
void kvarn_mma_probe(__global const float* a, __global const float* b, __global float* out) {
  const int lane = (int)get_local_id(0);
#if defined(AT_MMA_EMULATE) && AT_MMA_EMULATE
  __local AtWarp warp;
  __local AtWarp* W_ = &warp;
  const int lane_ = lane;
#endif
  const int g = lane >> 2, t = lane & 3;
  const uint a0 = at_pack_h2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1] AT_WARP);
  const uint a1 = at_pack_h2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1] AT_WARP);
  const uint a2 = at_pack_h2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9] AT_WARP);
  const uint a3 = at_pack_h2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9] AT_WARP);
  const uint b0 = at_pack_h2(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g] AT_WARP);
  const uint b1 = at_pack_h2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g] AT_WARP);
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  at_mma(c, a0, a1, a2, a3, b0, b1 AT_WARP);
  for (int e = 0; e < 4; ++e) out[lane * 4 + e] = c[e];

  const uint m = at_pack_h2((float)(8 * g + 2 * t), (float)(8 * g + 2 * t + 1) AT_WARP);
  const uint tr = at_transpose8(m, lane AT_WARP);
  out[128 + 2 * lane] = at_h2_lo(tr AT_WARP);
  out[128 + 2 * lane + 1] = at_h2_hi(tr AT_WARP);

  const uint wa = 0x9A3C5E71u * (uint)(lane + 1), wb = 0x6B2D4F83u * (uint)(lane + 3);
  const uint p = at_prmt(wa, wb, 0x5410u AT_WARP);
  const uint f = AT_FIELD_H2(p, 3, 4);
  out[192 + 2 * lane] = at_h2_lo(f AT_WARP);
  out[192 + 2 * lane + 1] = at_h2_hi(f AT_WARP);

  out[256 + lane] = at_sum_g((float)lane AT_WARP);
  const uint s = at_split_h2(1.0f / 3.0f AT_WARP);
  out[288 + lane] = at_h2_lo(s AT_WARP) + at_h2_hi(s AT_WARP);
  at_fence_gpu();  // only built: the matrix-unit program's in-kernel merge uses this fence
}
