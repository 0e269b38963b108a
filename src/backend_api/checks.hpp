// The argument checks of the backend interface (include/kvarn_cl/backend.hpp), written once: the
// CPU and the OpenCL backend call them at the top of every Backend method, and the CPU decode
// attention checks its index data with check_attend_indices. Every failure is an InvalidArgument
// that names the call, the argument and its value; what a launch needs from the checked values
// (the longest sequence, the pool sizes) comes back so that no caller recomputes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/format.hpp"

namespace kvarn_cl {

// [offset, offset + bytes) must lie inside `buffer`; `argument` names it ("attend: q").
void check_range(const Buffer& buffer, std::size_t offset, std::size_t bytes,
                 const std::string& argument);

// Batch and head counts of an attention call: num_seqs >= 0, num_kv_heads > 0, num_q_heads a
// positive multiple of num_kv_heads (GQA).
void check_heads(const char* call, int num_seqs, int num_q_heads, int num_kv_heads);

void check_rotate(const CodecParams& params, const Buffer& in, ElementType in_type,
                  std::size_t rows, const Buffer& out, std::size_t out_row);
// Every job's G source rows inside k_rows and v_rows and its record inside `records`.
RecordLayout check_quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                            const std::vector<QuantizeJob>& jobs, const Buffer& records);
// Every record id inside `records`, and room for one tile of G rows per id in k_out and v_out.
RecordLayout check_dequantize(const CodecParams& params, const Buffer& records,
                              const std::vector<std::uint32_t>& record_ids, const Buffer& k_out,
                              const Buffer& v_out);
// The decode step's calls: every destination row inside its pool, the input rows inside k and v,
// the status word inside its buffer; quantize_deferred: the device job list holds the host jobs.
void check_append_rows(const AppendRowsArgs& args);
void check_status_word(StatusWord status, const char* call);
// Every run's source rows inside src and destination rows inside dst, the run named.
void check_copy_rows(const Buffer& src, const Buffer& dst, const std::vector<RowRun>& runs,
                     std::size_t row_bytes);

// The pools and tables one attend() call reads, as far as its index data may address them.
struct AttendPools {
  int max_blocks = 0;      // block ids per row of the block tables
  int sink_capacity = 0;   // fp16 rows per (slot, KV head) of the sink pools
  int tail_capacity = 0;   // fp16 rows per (slot, KV head) of the tail pools
  std::size_t blocks = 0;  // blocks the records pool holds: size / (Hk * record bytes)
  std::size_t slots = 0;   // slots all four fp16 pools (sink, sink_v, tail, tail_v) hold
};

// Everything of AttendArgs but the index data: codec parameters, heads, no null buffer, no
// negative capacity, host copies given together, q/out/block_tables/seq_info large enough.
// Returns what the index data is checked against.
AttendPools check_attend(const AttendArgs& args);

// The index data of attend(), per batch entry: slot, sink_len, num_blocks, tail_len of its
// SeqInfo within `pools`, and its block ids within the records pool. Returns the most work units
// of any entry (sink and tail in tiles of `group` tokens, plus one per record), which sizes the
// launch.
int check_attend_indices(const AttendPools& pools, int num_seqs, const SeqInfo* seq_info,
                         const std::int32_t* block_tables, int group);

// Everything of AttendFp16Args but seq_lens: heads, head_dim, capacity, buffers and their sizes.
void check_attend_fp16(const AttendFp16Args& args);
// seq_lens[s] in [0, capacity] for every entry; returns the longest.
int check_seq_lens(int num_seqs, const std::int32_t* seq_lens, int capacity);

}  // namespace kvarn_cl
