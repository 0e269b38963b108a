// The kernel that merges the context splits' partials of every decode-attention program. All of
// them write partials the same way: running max m [num_parts], sum l [num_parts], unnormalized
// output in the rotated frame [num_parts][D], part index = (sequence * Hq + head) * num_splits +
// split. Needs common.cl, attention_shared.cl and subgroups.cl (the `subgroups` variant's
// reductions, under KV_SUBGROUPS).

// Log-sum-exp merge of the splits, normalization, optional rotation back, store.
// Launch: local (AT_MWG), global (AT_MWG, S * Hq): one work-group per output row. Its items are
// AT_MSL split lanes x 64 channel items: a split lane takes every AT_MSL-th split, a channel item
// the channels lid % 64 + 64k, so the loads of a split's partial are coalesced and a row with
// hundreds of splits (batch 1 at long context) still keeps many loads in flight; the split
// factors exp(m - max) are computed once per split, in parallel, into local memory.
// out_f16: store fp16 (round to nearest even).
#ifndef AT_MWG
#error "attention_merge.cl: AT_MWG (work-group size of kvarn_attend_merge) must be defined by the host (program_table.cpp)"
#endif
#if (AT_MWG % 64) != 0
#error "attention_merge.cl: AT_MWG must be a multiple of 64 (whole channel lanes)"
#endif
#define AT_MSL (AT_MWG / 64)
#define AT_MCPI ((KV_D + 63) / 64)  // channels per channel item
#define AT_MCHUNK 256               // splits whose factors are in local memory at once
__kernel __attribute__((reqd_work_group_size(AT_MWG, 1, 1)))
void kvarn_attend_merge(__global const float* part, ulong num_parts, int num_splits,
                        int rotate_back, int out_f16, __global void* out) {
  __global const float* pm = part;
  __global const float* pl = part + num_parts;
  __global const float* pacc = part + 2 * num_parts;
  __local float fs[AT_MCHUNK];
  __local float red[AT_MWG];
  __local float o[AT_MSL * KV_D];
  const int lid = (int)get_local_id(0);
  const int lane = lid / 64, ci = lid % 64;
  const ulong sq = get_group_id(1);
  const ulong base = sq * num_splits;

  // Largest running max over the splits.
  float m = AT_NEG_INF;
  for (int c = lid; c < num_splits; c += AT_MWG) m = fmax(m, pm[base + c]);
#if KV_SUBGROUPS
  const float mx = kv_group_max(m, red);  // subgroups.cl: 1 barrier instead of log2(AT_MWG) + 1
#else
  red[lid] = m;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = AT_MWG / 2; w > 0; w >>= 1) {
    if (lid < w) red[lid] = fmax(red[lid], red[lid + w]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float mx = red[0];
#endif
  barrier(CLK_LOCAL_MEM_FENCE);

  float acc[AT_MCPI];
  for (int k = 0; k < AT_MCPI; ++k) acc[k] = 0.0f;
  float lsum = 0.0f;
  if (mx != AT_NEG_INF) {  // uniform
    for (int c0 = 0; c0 < num_splits; c0 += AT_MCHUNK) {
      const int n = min(AT_MCHUNK, num_splits - c0);
      for (int c = lid; c < n; c += AT_MWG) {
        const float mc = pm[base + c0 + c];
        const float f = mc == AT_NEG_INF ? 0.0f : exp(mc - mx);
        fs[c] = f;
        lsum += f == 0.0f ? 0.0f : pl[base + c0 + c] * f;
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      #pragma unroll 4
      for (int c = lane; c < n; c += AT_MSL) {
        const float f = fs[c];
        if (f != 0.0f) {
          __global const float* src = pacc + (base + c0 + c) * KV_D;
          for (int k = 0; k < AT_MCPI; ++k)
            if (ci + 64 * k < KV_D) acc[k] += src[ci + 64 * k] * f;
        }
      }
      barrier(CLK_LOCAL_MEM_FENCE);
    }
  }
  // Sum over the items (the softmax sum) and over the split lanes (the outputs).
  for (int k = 0; k < AT_MCPI; ++k)
    if (ci + 64 * k < KV_D) o[lane * KV_D + ci + 64 * k] = acc[k];
#if KV_SUBGROUPS
  const float total = kv_group_sum(lsum, red);  // its barrier also publishes o
#else
  red[lid] = lsum;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int w = AT_MWG / 2; w > 0; w >>= 1) {
    if (lid < w) red[lid] += red[lid + w];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  const float total = red[0];
#endif
  for (int d = lid; d < KV_D; d += AT_MWG) {
    float v = 0.0f;
    for (int l = 0; l < AT_MSL; ++l) v += o[l * KV_D + d];
    o[d] = mx != AT_NEG_INF && total > 0.0f ? v / total : 0.0f;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (rotate_back && mx != AT_NEG_INF) {
    // mx is uniform over the group, so every item takes this branch together.
    at_fwht_local(o, 1, lid, AT_MWG);
  }
  at_store_output(o, 1, sq, out_f16, out, lid, AT_MWG);
}

// ---- one launch for a split context: the last split of a work-group's rows merges them -----------
// A launch whose context is split used to end with a second launch (kvarn_attend_merge above). On
// NVIDIA a dependent launch costs a few microseconds of its own (the launch, then the merge
// kernel's own chain of loads and barriers) on top of a decode step that at short context is only a
// few tile latencies long. Instead, every split kernel can merge in place: each work-group writes
// its partials, then takes a ticket (one atomic per group on a per-rows counter); the group that
// takes the last ticket reads every split's partials back (they are in L2: written microseconds
// before) and does the merge, rotation back and store itself. The cost moves from a launch to one
// atomic round trip and, in one group only, a read of splits x rows x D floats (host policy,
// attend_merges_in_kernel: only where that read is short). The split kernels' trailing arguments
// `tickets` (one int per work-group of a split, zero before the launch; the last group resets it)
// and `finish` choose how a launch ends:
#define AT_FINISH_PARTIALS 0  // write the split partials (kvarn_attend_merge runs next)
#define AT_FINISH_MERGE 1     // write them; the last split of each group's rows merges them
#define AT_FINISH_DIRECT 2    // one split: normalize, rotate back and store the output itself

// Makes this work-item's earlier global stores visible to every work-group of the device before
// its later memory operations (release), and orders later loads after earlier ones (acquire).
// mem_fence(CLK_GLOBAL_MEM_FENCE) is what OpenCL C 1.2 offers (and a fence no compiler moves
// memory operations across); builds that may use inline PTX (AT_PTX_FENCE) add the device scope
// explicitly with membar.gl, as CUDA's __threadfence().
#if defined(AT_PTX_FENCE) && AT_PTX_FENCE
inline void at_fence_device(void) {
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  uint z;
  asm volatile("{ membar.gl; mov.b32 %0, 0; }" : "=r"(z));
  mem_fence(CLK_GLOBAL_MEM_FENCE);
}
#else
inline void at_fence_device(void) { mem_fence(CLK_GLOBAL_MEM_FENCE); }
#endif

// Whether this work-group is the last of the num_splits groups of its rows to finish; every item
// gets the answer (uniform). Every item calls it after its partial stores; `flag` is an int of
// local memory. The last group resets the ticket to 0 for the next launch.
inline int at_last_split(volatile __global int* tickets, ulong ticket, int num_splits,
                         volatile __local int* flag, int lid) {
  at_fence_device();  // this item's partial stores before the ticket
  barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
  if (lid == 0) {
    const int last = atomic_inc(tickets + ticket) == num_splits - 1;
    if (last) atomic_xchg(tickets + ticket, 0);
    at_fence_device();  // the merge's loads after the ticket
    *flag = last;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  return *flag;
}

// The merge of kvarn_attend_merge for the `rows` query rows row0 .. of one work-group of `wg`
// items (a compile-time constant at every call): log-sum-exp over the splits, normalization,
// rotation back (rotate_back), f32/f16 store. o: rows x KV_D floats of local memory. The partials
// of the other groups are read through a volatile pointer: no line cached in this compute unit's L1
// before they were written (a merge of neighbouring rows by another group) may serve them.
// An item takes KV_D / min(wg, KV_D) channels of one row and makes one pass over the splits with a
// running max (online softmax), in split order: the result does not depend on which group came
// last. The partials of AT_MB splits are loaded together before any of them is used: a GPU issues
// a warp's instructions in order, so a load that followed the previous split's arithmetic would
// wait for the previous split's loads (one L2 round trip per split instead of per AT_MB splits).
// Items without a row of their own (wg > rows x KV_D) load a valid row and write nothing to o, so
// the loop and its loads stay uniform; the store after the rotation is at_store_output's
// branch-free one (attention_shared.cl says why).
#define AT_MB (KV_D <= 128 ? 16 : 8)  // splits per block of loads
inline void at_merge_split_rows(__global float* part_rw, ulong num_parts, ulong row0, int rows,
                                int num_splits, int rotate_back, int out_f16, __global void* out,
                                __local float* o, int lid, int wg) {
  const volatile __global float* pm = part_rw;
  const volatile __global float* pl = part_rw + num_parts;
  const volatile __global float* pacc = part_rw + 2 * num_parts;
  const int ipr = wg < KV_D ? wg : KV_D;  // items per row
  const int cpi = KV_D / ipr;             // channels per item (at most KV_D / 32)
  const int rpp = wg / ipr;               // rows per pass
  const int j = lid % ipr;
  for (int r0 = 0; r0 < rows; r0 += rpp) {
    const int r = r0 + lid / ipr;
    const int rr = r < rows ? r : rows - 1;
    const ulong base = (row0 + (ulong)rr) * (ulong)num_splits;
    float mx = AT_NEG_INF, l = 0.0f, acc[KV_D / 32];
    #pragma unroll
    for (int i = 0; i < KV_D / 32; ++i) acc[i] = 0.0f;
    for (int c0 = 0; c0 < num_splits; c0 += AT_MB) {
      float mb[AT_MB], lb[AT_MB], vb[AT_MB][KV_D / 32];
      #pragma unroll
      for (int k = 0; k < AT_MB; ++k) {
        const int c = min(c0 + k, num_splits - 1);  // past the splits: a valid split, unused
        const volatile __global float* src = pacc + (base + (ulong)c) * KV_D + j;
        mb[k] = pm[base + c];
        lb[k] = pl[base + c];
        #pragma unroll
        for (int i = 0; i < KV_D / 32; ++i) vb[k][i] = i < cpi ? src[i * ipr] : 0.0f;
      }
      #pragma unroll
      for (int k = 0; k < AT_MB; ++k) {
        // A split that saw no token (m = -inf, l = 0, acc = 0) adds nothing; nor one past the end.
        const float mc = c0 + k < num_splits ? mb[k] : AT_NEG_INF;
        const float mn = fmax(mx, mc);
        const float a = mx == AT_NEG_INF ? 0.0f : exp(mx - mn);  // rescales what came before
        const float f = mc == AT_NEG_INF ? 0.0f : exp(mc - mn);
        l = l * a + lb[k] * f;
        #pragma unroll
        for (int i = 0; i < KV_D / 32; ++i) acc[i] = acc[i] * a + vb[k][i] * f;
        mx = mn;
      }
    }
    if (r < rows) {
      #pragma unroll
      for (int i = 0; i < KV_D / 32; ++i)
        if (i < cpi) o[r * KV_D + j + i * ipr] = mx != AT_NEG_INF && l > 0.0f ? acc[i] / l : 0.0f;
    }
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  if (rotate_back) at_fwht_local(o, rows, lid, wg);
  at_store_output(o, rows, row0, out_f16, out, lid, wg);
}
