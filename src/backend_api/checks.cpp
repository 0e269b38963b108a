// The argument checks of the backend interface (checks.hpp), and Backend::first_row_out_of_range,
// the portable check of row values that backends without a faster one inherit.
#include "backend_api/checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>

#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl {
namespace {

[[noreturn]] void bad_index(const char* call, const char* what, int entry, long long value,
                            long long limit) {
  std::ostringstream msg;
  msg << call << ": " << what << " of batch entry " << entry << " is " << value << ", outside [0, "
      << limit << ')';
  throw InvalidArgument(msg.str());
}

void check_not_null(const void* p, const char* call, const char* args, const char* field) {
  if (p == nullptr)
    throw InvalidArgument(std::string(call) + ": " + args + "::" + field + " is null");
}

void check_not_negative(int value, const char* call, const char* field) {
  if (value < 0)
    throw InvalidArgument(std::string(call) + ": " + field + " " + std::to_string(value) +
                          " is negative");
}

// Slots a pair of fp16 pools (K and V) holds at `capacity` rows per (slot, KV head); a pool of
// zero capacity holds any number.
std::size_t fp16_slots(const Buffer& k, const Buffer& v, std::size_t kv_heads, int capacity,
                       std::size_t head_dim) {
  const std::size_t slot_bytes = kv_heads * std::size_t(capacity) * head_dim * 2;
  return slot_bytes == 0 ? SIZE_MAX : std::min(k.size(), v.size()) / slot_bytes;
}

}  // namespace

void check_range(const Buffer& buffer, std::size_t offset, std::size_t bytes,
                 const std::string& argument) {
  if (offset <= buffer.size() && bytes <= buffer.size() - offset) return;
  std::ostringstream msg;
  msg << argument << ": bytes [" << offset << ", ";
  if (bytes <= SIZE_MAX - offset)
    msg << offset + bytes;
  else
    msg << offset << " + " << bytes;
  msg << ") are outside the buffer of " << buffer.size() << " bytes";
  throw InvalidArgument(msg.str());
}

void check_heads(const char* call, int num_seqs, int num_q_heads, int num_kv_heads) {
  check_not_negative(num_seqs, call, "num_seqs");
  if (num_kv_heads <= 0)
    throw InvalidArgument(std::string(call) + ": num_kv_heads " + std::to_string(num_kv_heads) +
                          " is not positive");
  if (num_q_heads <= 0 || num_q_heads % num_kv_heads != 0)
    throw InvalidArgument(std::string(call) + ": num_q_heads " + std::to_string(num_q_heads) +
                          " is not a positive multiple of num_kv_heads " +
                          std::to_string(num_kv_heads));
}

void check_rotate(const CodecParams& params, const Buffer& in, ElementType in_type,
                  std::size_t rows, const Buffer& out, std::size_t out_row) {
  params.validate();
  const std::size_t D = std::size_t(params.head_dim);
  check_range(in, 0, rows * D * element_bytes(in_type), "rotate: in");
  check_range(out, out_row * D * 2, rows * D * 2, "rotate: out");
}

RecordLayout check_quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                            const std::vector<QuantizeJob>& jobs, const Buffer& records) {
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t row_bytes = std::size_t(l.head_dim) * 2;
  const std::size_t k_rows_n = k_rows.size() / row_bytes, v_rows_n = v_rows.size() / row_bytes;
  const std::size_t n_records = records.size() / l.bytes;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const QuantizeJob& j = jobs[i];
    if (std::size_t(j.src_row) + l.group > std::min(k_rows_n, v_rows_n))
      throw InvalidArgument("quantize: jobs[" + std::to_string(i) +
                            "].src_row = " + std::to_string(j.src_row) + " needs rows up to " +
                            std::to_string(std::size_t(j.src_row) + l.group) + " but k_rows has " +
                            std::to_string(k_rows_n) + " and v_rows " + std::to_string(v_rows_n));
    if (j.dst_record >= n_records)
      throw InvalidArgument("quantize: jobs[" + std::to_string(i) +
                            "].dst_record = " + std::to_string(j.dst_record) +
                            " but records holds " + std::to_string(n_records) + " records of " +
                            std::to_string(l.bytes) + " bytes");
  }
  return l;
}

void check_status_word(StatusWord status, const char* call) {
  check_not_null(status.words, call, "status", "words");
  check_range(*status.words, status.index * 4, 4, std::string(call) + ": status word");
}

void check_append_rows(const AppendRowsArgs& a) {
  const char* call = "append_rows";
  CodecParams{Preset::k4v2_g128, a.head_dim, kDefaultSinkhornIters}.validate();
  for (const void* p : {static_cast<const void*>(a.k), static_cast<const void*>(a.v),
                        static_cast<const void*>(a.destinations),
                        static_cast<const void*>(a.sink_k), static_cast<const void*>(a.sink_v),
                        static_cast<const void*>(a.tail_k), static_cast<const void*>(a.tail_v)})
    check_not_null(p, call, "AppendRowsArgs", "k, v, destinations and the four pools");
  check_status_word(a.status, call);
  if (a.rows == 0) return;
  check_not_null(a.host_destinations, call, "AppendRowsArgs", "host_destinations");
  if (a.rows > 0x7FFFFFFFu)
    throw InvalidArgument("append_rows: rows " + std::to_string(a.rows) + " exceed 2^31 - 1");
  const std::size_t row_bytes = std::size_t(a.head_dim) * 2;
  check_range(*a.k, 0, a.rows * std::size_t(a.head_dim) * element_bytes(a.in_type),
              "append_rows: k");
  check_range(*a.v, 0, a.rows * std::size_t(a.head_dim) * element_bytes(a.in_type),
              "append_rows: v");
  check_range(*a.destinations, 0, a.rows * 4, "append_rows: destinations");
  const std::size_t sink_rows = std::min(a.sink_k->size(), a.sink_v->size()) / row_bytes;
  const std::size_t tail_rows = std::min(a.tail_k->size(), a.tail_v->size()) / row_bytes;
  for (std::size_t r = 0; r < a.rows; ++r) {
    const std::int32_t d = a.host_destinations[r];
    const bool tail = d >= 0;
    const std::size_t row = tail ? std::size_t(d) : std::size_t(-(std::int64_t(d) + 1));
    if (row >= (tail ? tail_rows : sink_rows))
      throw InvalidArgument("append_rows: destinations[" + std::to_string(r) +
                            "] = " + std::to_string(d) + " names " + (tail ? "tail" : "sink") +
                            " row " + std::to_string(row) + " but the pool holds " +
                            std::to_string(tail ? tail_rows : sink_rows) + " rows");
  }
}

RecordLayout check_dequantize(const CodecParams& params, const Buffer& records,
                              const std::vector<std::uint32_t>& record_ids, const Buffer& k_out,
                              const Buffer& v_out) {
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t n_records = records.size() / l.bytes;
  for (std::size_t i = 0; i < record_ids.size(); ++i)
    if (record_ids[i] >= n_records)
      throw InvalidArgument("dequantize: record_ids[" + std::to_string(i) +
                            "] = " + std::to_string(record_ids[i]) + " but records holds " +
                            std::to_string(n_records) + " records of " + std::to_string(l.bytes) +
                            " bytes");
  const std::size_t out_bytes = record_ids.size() * std::size_t(l.group) * l.head_dim * 2;
  check_range(k_out, 0, out_bytes, "dequantize: k_out");
  check_range(v_out, 0, out_bytes, "dequantize: v_out");
  return l;
}

void check_copy_rows(const Buffer& src, const Buffer& dst, const std::vector<RowRun>& runs,
                     std::size_t row_bytes) {
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const RowRun& r = runs[i];
    const std::string at = "copy_rows: runs[" + std::to_string(i) + "]";
    check_range(src, r.src_row * row_bytes, r.rows * row_bytes, at + " source");
    check_range(dst, r.dst_row * row_bytes, r.rows * row_bytes, at + " destination");
  }
}

AttendPools check_attend(const AttendArgs& a) {
  const char* call = "attend";
  const RecordLayout L = RecordLayout::make(a.params);
  check_heads(call, a.num_seqs, a.num_q_heads, a.num_kv_heads);
  check_not_null(a.q, call, "AttendArgs", "q");
  check_not_null(a.out, call, "AttendArgs", "out");
  check_not_null(a.records, call, "AttendArgs", "records");
  check_not_null(a.block_tables, call, "AttendArgs", "block_tables");
  check_not_null(a.sink, call, "AttendArgs", "sink");
  check_not_null(a.tail, call, "AttendArgs", "tail");
  check_not_null(a.sink_v, call, "AttendArgs", "sink_v");
  check_not_null(a.tail_v, call, "AttendArgs", "tail_v");
  check_not_null(a.seq_info, call, "AttendArgs", "seq_info");
  check_not_negative(a.max_blocks, call, "max_blocks");
  check_not_negative(a.sink_capacity, call, "sink_capacity");
  check_not_negative(a.tail_capacity, call, "tail_capacity");
  if ((a.host_seq_info == nullptr) != (a.host_block_tables == nullptr))
    throw InvalidArgument("attend: host_seq_info and host_block_tables must be given together");
  const std::size_t S = std::size_t(a.num_seqs), D = std::size_t(L.head_dim);
  const std::size_t Hq = std::size_t(a.num_q_heads), Hk = std::size_t(a.num_kv_heads);
  check_range(*a.q, 0, S * Hq * D * 4, "attend: q");
  check_range(*a.out, 0, S * Hq * D * element_bytes(a.out_type), "attend: out");
  check_range(*a.block_tables, 0, S * std::size_t(a.max_blocks) * 4, "attend: block_tables");
  check_range(*a.seq_info, 0, S * sizeof(SeqInfo), "attend: seq_info");
  AttendPools p;
  p.max_blocks = a.max_blocks;
  p.sink_capacity = a.sink_capacity;
  p.tail_capacity = a.tail_capacity;
  p.blocks = a.records->size() / (Hk * L.bytes);
  p.slots = std::min(fp16_slots(*a.sink, *a.sink_v, Hk, a.sink_capacity, D),
                     fp16_slots(*a.tail, *a.tail_v, Hk, a.tail_capacity, D));
  return p;
}

int check_attend_indices(const AttendPools& pools, int num_seqs, const SeqInfo* seq_info,
                         const std::int32_t* block_tables, int group) {
  const char* call = "attend";
  int max_units = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const SeqInfo& in = seq_info[s];
    if (in.slot < 0 || std::size_t(in.slot) >= pools.slots)
      bad_index(call, "slot", s, in.slot, (long long)pools.slots);
    if (in.sink_len < 0 || in.sink_len > pools.sink_capacity)
      bad_index(call, "sink_len", s, in.sink_len, pools.sink_capacity + 1LL);
    if (in.num_blocks < 0 || in.num_blocks > pools.max_blocks)
      bad_index(call, "num_blocks", s, in.num_blocks, pools.max_blocks + 1LL);
    if (in.tail_len < 0 || in.tail_len > pools.tail_capacity)
      bad_index(call, "tail_len", s, in.tail_len, pools.tail_capacity + 1LL);
    const std::int32_t* row = block_tables + std::size_t(s) * std::size_t(pools.max_blocks);
    for (int j = 0; j < in.num_blocks; ++j)
      if (row[j] < 0 || std::size_t(row[j]) >= pools.blocks)
        bad_index(call, "block id", s, row[j], (long long)pools.blocks);
    const int units =
        (in.sink_len + group - 1) / group + in.num_blocks + (in.tail_len + group - 1) / group;
    max_units = std::max(max_units, units);
  }
  return max_units;
}

void check_attend_fp16(const AttendFp16Args& a) {
  const char* call = "attend_fp16";
  check_heads(call, a.num_seqs, a.num_q_heads, a.num_kv_heads);
  validate_head_dim(a.head_dim, "attend_fp16 head_dim");
  check_not_negative(a.capacity, call, "capacity");
  check_not_null(a.q, call, "AttendFp16Args", "q");
  check_not_null(a.out, call, "AttendFp16Args", "out");
  check_not_null(a.k, call, "AttendFp16Args", "k");
  check_not_null(a.v, call, "AttendFp16Args", "v");
  check_not_null(a.seq_lens, call, "AttendFp16Args", "seq_lens");
  const std::size_t S = std::size_t(a.num_seqs), D = std::size_t(a.head_dim);
  const std::size_t Hq = std::size_t(a.num_q_heads), Hk = std::size_t(a.num_kv_heads);
  const std::size_t kv_bytes = S * Hk * std::size_t(a.capacity) * D * 2;
  check_range(*a.q, 0, S * Hq * D * 4, "attend_fp16: q");
  check_range(*a.out, 0, S * Hq * D * element_bytes(a.out_type), "attend_fp16: out");
  check_range(*a.k, 0, kv_bytes, "attend_fp16: k");
  check_range(*a.v, 0, kv_bytes, "attend_fp16: v");
  check_range(*a.seq_lens, 0, S * 4, "attend_fp16: seq_lens");
}

int check_seq_lens(int num_seqs, const std::int32_t* seq_lens, int capacity) {
  int longest = 0;
  for (int s = 0; s < num_seqs; ++s) {
    if (seq_lens[s] < 0 || seq_lens[s] > capacity)
      bad_index("attend_fp16", "seq_len", s, seq_lens[s], capacity + 1LL);
    longest = std::max(longest, seq_lens[s]);
  }
  return longest;
}

std::int64_t Backend::first_row_out_of_range(const Buffer& rows_buf, std::size_t rows, int head_dim,
                                             float max_abs) {
  if (head_dim <= 0)
    throw InvalidArgument("first_row_out_of_range: head_dim " + std::to_string(head_dim));
  const std::size_t row_values = std::size_t(head_dim);
  constexpr std::size_t kRowsPerRead = 256;
  std::vector<half_bits> chunk(kRowsPerRead * row_values);
  for (std::size_t first = 0; first < rows; first += kRowsPerRead) {
    const std::size_t n = std::min(kRowsPerRead, rows - first);
    read(rows_buf, first * row_values * 2, chunk.data(), n * row_values * 2);
    for (std::size_t i = 0; i < n * row_values; ++i)
      if (!(std::fabs(half_to_float(chunk[i])) <= max_abs))  // NaN fails the comparison too
        return std::int64_t(first + i / row_values);
  }
  return -1;
}

}  // namespace kvarn_cl
