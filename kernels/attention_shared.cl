// What the decode-attention programs share: the FWHT of rows held in local memory (every
// program, the matrix-unit kernel of attention_mma.cl included), and for the fused tile-slot
// kernel of attention.cl, the short-context and fp16 kernels of attention_short.cl and the merge
// the seq_info entry, the walk over a sequence's units and the work-group's place in the launch
// (attention_mma.cl writes its own: the shared form cost it registers, see there). Each program
// is built from common.cl, this file, attention_merge.cl, then its own file.
//
// No function of the attention programs returns a struct: each fills the caller's through a
// pointer. A struct return is an `sret noalias` pointer argument in clang's IR, and inlining a
// function with a noalias argument leaves an llvm.experimental.noalias.scope.decl call behind,
// which Oclgrind (21.10, LLVM 14) cannot run ("Undefined external function" when creating the
// kernel), so the attention kernels could not be checked under it. After inlining the code is
// the same.

#define AT_NEG_INF (-INFINITY)

// FWHT of `rows` rows of KV_D floats in local memory, same stage order and butterflies as
// kvarn_cl::fwht_inplace, then the 1/sqrt(D) scale. All items of the group must call it.
inline void at_fwht_local(__local float* x, int rows, int lid, int wg) {
  for (int h = 1; h < KV_D; h <<= 1) {
    for (int p = lid; p < rows * (KV_D / 2); p += wg) {
      const int row = p / (KV_D / 2), b = p % (KV_D / 2);
      const int a = row * KV_D + (((b & ~(h - 1)) << 1) | (b & (h - 1)));
      const float ya = x[a], yb = x[a + h];
      x[a] = ya + yb;
      x[a + h] = ya - yb;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (int p = lid; p < rows * KV_D; p += wg) x[p] *= KV_ROT_SCALE;
  barrier(CLK_LOCAL_MEM_FENCE);
}


// One entry of seq_info (the host's kvarn_cl::SeqInfo, include/kvarn_cl/backend.hpp, read as an
// int4 with the same field order): where one sequence's tokens are.
typedef struct {
  int slot;        // row of the sequence in the fp16 sink and tail pools
  int sink_len;    // fp16 sink tokens, the first of the sequence
  int num_blocks;  // records in its block-table row, after the sink
  int tail_len;    // fp16 tail tokens, the last of the sequence
} AtSeqInfo;

inline void at_seq_info(__global const int4* seq_info, int s, AtSeqInfo* info) {
  const int4 v = seq_info[s];
  info->slot = v.x;
  info->sink_len = v.y;
  info->num_blocks = v.z;
  info->tail_len = v.w;
}

// Units (chunks of at most G tokens) of `tokens` fp16 rows.
inline int at_chunks(int tokens) { return (tokens + KV_G - 1) / KV_G; }

// Units of a sequence, in this order (at_seq_unit): ceil(sink_len/G) sink chunks, num_blocks record tiles in
// block-table order, ceil(tail_len/G) tail chunks.
inline int at_units(AtSeqInfo info) {
  return at_chunks(info.sink_len) + info.num_blocks + at_chunks(info.tail_len);
}

// The first unit of split `split` of n units: split c takes [n*c/NS, n*(c+1)/NS).
inline int at_split_first(int n, int split, int num_splits) {
  return (int)((long)n * split / num_splits);
}

// The kernel arguments that locate a fused launch's context: records [blocks][Hk] of
// KV_RECORD_BYTES, block_tables [S][max_blocks], fp16 sink and tail pools [slot][Hk][cap][D].
typedef struct {
  __global const uchar* records;
  __global const int* block_tables;
  int max_blocks;
  __global const half* sink;
  __global const half* tail;
  __global const half* sink_v;
  __global const half* tail_v;
  int sink_cap;
  int tail_cap;
  int num_kv_heads;
} AtPools;

// A unit of context: up to G tokens, either one record tile or fp16 K/V rows (token-major, D
// halves per row). n == 0: no unit.
// Pointers of a unit are always valid addresses (a real record, the sink rows) even where the
// unit does not use them: PoCL 3.1 was seen to run a work-item through the record branch with a
// null record pointer when the items of a group took different branches (segfault).
typedef struct {
  __global const uchar* rec;  // the record (see is_rec)
  int is_rec;                 // 1: a record tile; 0: fp16 rows
  __global const half* k;
  __global const half* v;
  int n;                      // tokens
} AtUnit;

inline void at_no_unit(const AtPools* p, AtUnit* u) {
  u->rec = p->records;
  u->is_rec = 0;
  u->k = p->sink;
  u->v = p->sink_v;
  u->n = 0;
}

// Unit ui (0 <= ui < at_units(info)) of sequence s for KV head h.
inline void at_seq_unit(const AtPools* p, AtSeqInfo info, int s, int h, int ui, AtUnit* u) {
  at_no_unit(p, u);
  const int ns = at_chunks(info.sink_len), nb = info.num_blocks;
  const ulong head_row = (ulong)info.slot * p->num_kv_heads + h;
  if (ui < ns) {
    const ulong row = head_row * p->sink_cap + (ulong)ui * KV_G;
    u->k = p->sink + row * KV_D;
    u->v = p->sink_v + row * KV_D;
    u->n = min(KV_G, info.sink_len - ui * KV_G);
  } else if (ui < ns + nb) {
    const ulong b = (ulong)p->block_tables[(ulong)s * p->max_blocks + (ui - ns)];
    u->rec = p->records + (b * p->num_kv_heads + h) * KV_RECORD_BYTES;
    u->is_rec = 1;
    u->n = KV_G;
  } else {
    const int j = ui - ns - nb;
    const ulong row = head_row * p->tail_cap + (ulong)j * KV_G;
    u->k = p->tail + row * KV_D;
    u->v = p->tail_v + row * KV_D;
    u->n = min(KV_G, info.tail_len - j * KV_G);
  }
}

// The work-group's place in a split-kernel launch, global (num_splits * WG, Hk * (R / AT_HPW), S):
// context split, KV head, sequence and the first of its AT_HPW query rows (s * Hq + query head;
// the rows of q, of the output and of the partials).
typedef struct {
  int split;
  int h;
  int s;
  ulong row0;
} AtGroup;

inline void at_group(int num_kv_heads, int q_per_kv, AtGroup* g) {
  const int hb_per_kv = q_per_kv / AT_HPW;
  g->split = (int)get_group_id(0);
  g->h = (int)get_group_id(1) / hb_per_kv;
  const int hb = (int)get_group_id(1) % hb_per_kv;
  g->s = (int)get_group_id(2);
  g->row0 = (ulong)g->s * (num_kv_heads * q_per_kv) + (g->h * q_per_kv + hb * AT_HPW);
}

// Copies the queries of the group's AT_HPW rows (q is [S][Hq][D]) into `rows` (AT_HPW x KV_D
// floats of local memory) and rotates them when `rotate`. All `wg` items must call it.
inline void at_load_query_rows(__global const float* q, ulong row0, __local float* rows, int lid,
                               int wg, int rotate) {
  __global const float* src = q + row0 * KV_D;
  for (int p = lid; p < AT_HPW * KV_D; p += wg) rows[p] = src[p];
  barrier(CLK_LOCAL_MEM_FENCE);
  if (rotate) at_fwht_local(rows, AT_HPW, lid, wg);
}

// Index of the partial of query row `row` and split `split` in m and l (times KV_D: its output
// row), the layout kvarn_attend_merge reads.
inline ulong at_part(ulong row, int split, int num_splits) { return row * num_splits + split; }

// Stores `rows` rows of KV_D floats of local memory as output rows row0.. (f32, or f16 rounded
// to nearest even). Branch-free: where the group has more items than the rows have elements, the
// items past them store the last element again (the same value to the same address). Written with
// a bound (`for (p = lid; p < n; p += wg)`, or a guarded body), PoCL 3.1 let those items store a
// row past the group's rows at the end of attention_short.cl's kernels (one split, or the
// in-kernel merge; D 64, one head per group: 128 items, 64 elements), corrupting the heap.
inline void at_store_output(__local const float* o, int rows, ulong row0, int out_f16,
                            __global void* out, int lid, int wg) {
  const int n = rows * KV_D;
  for (int p0 = 0; p0 < n; p0 += wg) {
    const int p = min(p0 + lid, n - 1);
    if (out_f16) vstore_half_rte(o[p], row0 * KV_D + p, (__global half*)out);
    else ((__global float*)out)[row0 * KV_D + p] = o[p];
  }
}
