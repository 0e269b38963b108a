// Capability probe of the `denormal_decode` variant (src/opencl/denormal_decode.cpp; the variant is
// attention.cl under AT_DENORM): item i masks a code out of a word exactly as the attention kernel
// does (as_float(word & mask), a denormal float c·2^(p−149)) and multiply-adds it with a factor of
// 3·2^100 into a bias of 2^(p−49), in contracted arithmetic like the kernel. The host compares
// every result with the exact value (3c + 1)·2^(p−49); a device or compiler that flushes denormal
// operands to zero returns 2^(p−49) instead, and one that loses the mask's neighbours' bits
// (the words carry other bits around the code) returns something else. Either keeps the portable
// decode.
//   words[i]    a code of 1..15 at bit i % 21, other bits set around it (host)
//   factors[i]  3·2^100; factors[DN_WG + i] the bias 2^(p−49)
//   out[i]      the result
#ifndef DN_WG
#error "denormal_probe.cl: DN_WG (its work-group size) must be defined by the host (program_table.cpp)"
#endif
#pragma OPENCL FP_CONTRACT ON
__kernel __attribute__((reqd_work_group_size(DN_WG, 1, 1)))
void kvarn_denormal_probe(__global const uint* words, __global const float* factors,
                          __global float* out) {
  const int i = (int)get_global_id(0);
  const uint p = (uint)(i % 21);
  const float f = as_float(words[i] & (0xFu << p));
  out[i] = factors[DN_WG + i] + factors[i] * f;
}

// The rate check of the same probe (GPUs only, denormal_decode.cpp): every item runs a chain of
// multiply-adds whose other operand is f[0], a denormal number in one launch and a normal one in
// the other; the host times both. Hardware that takes a slow path for denormal operands (a CPU's
// microcode assist costs about 8x in the attention kernel) shows it here, and keeps the portable
// decode. The eight accumulators feed each other so that no product is loop-invariant.
__kernel __attribute__((reqd_work_group_size(DN_WG, 1, 1)))
void kvarn_denormal_rate(__global const float* f, __global float* out, int iters) {
  const float x = f[0];
  float a[8];
  for (int k = 0; k < 8; ++k) a[k] = 1.0f + (float)(get_global_id(0) % 7) + (float)k;
  for (int i = 0; i < iters; ++i) {
    a[0] += a[1] * x; a[1] += a[2] * x; a[2] += a[3] * x; a[3] += a[4] * x;
    a[4] += a[5] * x; a[5] += a[6] * x; a[6] += a[7] * x; a[7] += a[0] * x;
  }
  out[get_global_id(0)] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
