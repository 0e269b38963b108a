// The `subgroups` kernel variant (-DKV_SUBGROUPS=1; docs/PORTABILITY.md): reductions over a
// work-group by the device's subgroup operations, with one local-memory step across subgroups,
// instead of a tree of log2(items) barriers through local memory. The host passes KV_SUBGROUPS
// only where the device reports cl_intel_subgroups or cl_khr_subgroups and the probe of
// subgroups_probe.cl passed (src/opencl/subgroups.cpp); every other device builds the portable
// reductions of the kernels that include this file.
//
// Nothing here assumes a subgroup size (Intel picks 4 to 32 per kernel), that subgroups are
// equal-sized, or which local ids a subgroup holds: each subgroup reduces what its items hold,
// its first item stores that under the subgroup's id, and every item then combines the
// get_num_sub_groups() slots in id order. The subgroup step's own order is the device's; the
// kernels that use it are held to SPEC §5's attention bar (1e-4 relative), not to bit equality
// with the portable tree, and a launch still gives the same bits when repeated.
//
// OpenCL C 1.2 declares these built-ins through cl_intel_subgroups (Intel's compiler defines that
// macro under -cl-std=CL1.2, but not cl_khr_subgroups, which is an OpenCL C 2.0 extension); a
// compiler that defines neither fails the build, and the probe reports the device as without.
#ifndef KV_SUBGROUPS
#define KV_SUBGROUPS 0
#endif
#if KV_SUBGROUPS
#if defined(cl_intel_subgroups)
#pragma OPENCL EXTENSION cl_intel_subgroups : enable
#elif defined(cl_khr_subgroups)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#else
#error "KV_SUBGROUPS: the compiler defines neither cl_intel_subgroups nor cl_khr_subgroups"
#endif

// Every item of the work-group gets the largest v of the group. slots: at least
// get_num_sub_groups() floats of local memory, free to write. Contains a barrier: every item
// calls it; the caller places a barrier before slots is written again.
inline float kv_group_max(float v, __local float* slots) {
  const float s = sub_group_reduce_max(v);
  if (get_sub_group_local_id() == 0) slots[get_sub_group_id()] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  float m = slots[0];
  const uint n = get_num_sub_groups();
  for (uint i = 1; i < n; ++i) m = fmax(m, slots[i]);
  return m;
}

// The same for the sum of v (the subgroups' sums added in subgroup id order).
inline float kv_group_sum(float v, __local float* slots) {
  const float s = sub_group_reduce_add(v);
  if (get_sub_group_local_id() == 0) slots[get_sub_group_id()] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  float t = slots[0];
  const uint n = get_num_sub_groups();
  for (uint i = 1; i < n; ++i) t += slots[i];
  return t;
}
#endif
