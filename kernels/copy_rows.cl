// Batched row copies in one launch (Backend::copy_rows): the cache scatters appended rows into
// its sink/tail pools and gathers materialized rows with it on every append.
//
// Runs are given as ulong4 {src_row, dst_row, rows, first_chunk}: first_chunk is the exclusive
// prefix sum of the runs' chunk counts, where a chunk is CR_CHUNK consecutive 16-byte words of one
// run. Each work-item copies one 16-byte word; a work-group covers CR_WG words and finds its run
// by binary search over first_chunk. Rows are row_bytes bytes, a multiple of 16 (fp16 rows of
// D >= 64 channels). No run's source overlaps any destination (the Backend contract), so the
// copy order does not matter.
// Launch: local (CR_WG), global (CR_WG * total_chunks).
#ifndef CR_WG
#error "copy_rows.cl: CR_WG (work-group size) must be defined by the host (program_table.cpp)"
#endif

__kernel __attribute__((reqd_work_group_size(CR_WG, 1, 1)))
void kvarn_copy_rows(__global const uint4* src, __global uint4* dst, __global const ulong4* runs,
                     int num_runs, ulong words_per_row) {
  const ulong chunk = get_group_id(0);
  // Last run whose first chunk is <= chunk.
  int lo = 0, hi = num_runs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (runs[mid].w <= chunk) lo = mid;
    else hi = mid - 1;
  }
  const ulong4 r = runs[lo];
  const ulong word = (chunk - r.w) * CR_WG + get_local_id(0);
  if (word < r.z * words_per_row) dst[r.y * words_per_row + word] = src[r.x * words_per_row + word];
}
