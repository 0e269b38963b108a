// Capability probe of the `subgroups` variant (src/opencl/subgroups.cpp): one work-group of
// SG_WG items runs the reductions the kernels use (subgroups.cl, and attention_short.cl's
// per-head maximum) on known inputs; the host compares the results with exact values (the
// inputs are small whole numbers, so every order of the sums gives the same float). A compiler
// without the built-ins fails the build instead; either failure keeps the portable kernels.
//   out[0, SG_WG)            kv_group_max of in, seen by each item
//   out[SG_WG, 2 SG_WG)      kv_group_sum of in, seen by each item
//   out[2 SG_WG, + 4)        the maximum of each quarter of the group (4 "heads" of SG_WG / 4
//                            items), by one subgroup reduction per head as attention_short.cl
//   out[2 SG_WG + 4, + 3)    item 0's subgroup size, the number of subgroups, which extension
//                            (1 cl_intel_subgroups, 2 cl_khr_subgroups)
#ifndef SG_WG
#error "subgroups_probe.cl: SG_WG (its work-group size) must be defined by the host (program_table.cpp)"
#endif
#define SG_HEADS 4
__kernel __attribute__((reqd_work_group_size(SG_WG, 1, 1)))
void kvarn_subgroups_probe(__global const float* in, __global float* out) {
  __local float slots[SG_WG * SG_HEADS];
  const int lid = (int)get_local_id(0);
  const float v = in[lid];
  out[lid] = kv_group_max(v, slots);
  barrier(CLK_LOCAL_MEM_FENCE);
  out[SG_WG + lid] = kv_group_sum(v, slots);
  barrier(CLK_LOCAL_MEM_FENCE);
  const int head = lid / (SG_WG / SG_HEADS);
  const int nsg = (int)get_num_sub_groups(), sg = (int)get_sub_group_id();
  for (int h = 0; h < SG_HEADS; ++h) {
    const float hm = sub_group_reduce_max(head == h ? v : -INFINITY);
    if (get_sub_group_local_id() == 0) slots[h * nsg + sg] = hm;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (lid < SG_HEADS) {
    float m = slots[lid * nsg];
    for (int i = 1; i < nsg; ++i) m = fmax(m, slots[lid * nsg + i]);
    out[2 * SG_WG + lid] = m;
  }
  if (lid == 0) {
    out[2 * SG_WG + SG_HEADS] = (float)get_sub_group_size();
    out[2 * SG_WG + SG_HEADS + 1] = (float)nsg;
#if defined(cl_intel_subgroups)
    out[2 * SG_WG + SG_HEADS + 2] = 1.0f;
#else
    out[2 * SG_WG + SG_HEADS + 2] = 2.0f;
#endif
  }
}
