// The CPU backend: Buffers are host memory; every batched call runs the SIMD paths of the CPU
// codec (src/cpu/simd.hpp, held to the scalar reference by the tests) on the backend's one
// persistent thread pool. It is the library's fallback.
#include <cstring>
#include <new>
#include <sstream>
#include <vector>

#include <unistd.h>

#include "cpu/attention.hpp"
#include "cpu/simd.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/thread_pool.hpp"

namespace kvarn_cl {
namespace {

class HostBuffer final : public Buffer {
 public:
  explicit HostBuffer(std::size_t bytes) : bytes_(bytes) {
    try {
      // Zero-filled: pools start in a defined state and reports of unused rows stay reproducible.
      data_.reset(new unsigned char[bytes == 0 ? 1 : bytes]());
    } catch (const std::bad_alloc&) {
      throw OutOfMemory("cpu backend: cannot allocate " + std::to_string(bytes) + " bytes");
    }
  }
  std::size_t size() const noexcept override { return bytes_; }
  void* host_data() noexcept override { return data_.get(); }

 private:
  std::unique_ptr<unsigned char[]> data_;
  std::size_t bytes_;
};

const unsigned char* bytes_of(const Buffer& b, const char* what) {
  const void* p = b.host_data();
  if (p == nullptr)
    throw InvalidArgument(std::string("cpu backend: ") + what +
                          " is not a host buffer (it belongs to another backend)");
  return static_cast<const unsigned char*>(p);
}
unsigned char* bytes_of(Buffer& b, const char* what) {
  return const_cast<unsigned char*>(bytes_of(static_cast<const Buffer&>(b), what));
}

void check_range(const Buffer& b, std::size_t offset, std::size_t bytes, const char* what) {
  if (offset > b.size() || bytes > b.size() - offset) {
    std::ostringstream msg;
    msg << "cpu backend: " << what << " range [" << offset << ", " << offset + bytes
        << ") exceeds the buffer size " << b.size();
    throw InvalidArgument(msg.str());
  }
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(std::shared_ptr<ThreadPool> pool) : pool_(std::move(pool)) {
    if (!pool_) throw InvalidArgument("make_cpu_backend: the thread pool is null");
  }

  std::string name() const override {
    std::string n = "cpu (" + std::to_string(pool_->size()) + " threads";
    if (pool_->size() != pool_->requested())
      n += " of " + std::to_string(pool_->requested()) + " requested";
    return n + ", " + cpu::simd::target_name() + ")";
  }

  std::size_t memory_capacity() const noexcept override {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? std::size_t(pages) * std::size_t(page) : 0;
  }

  std::unique_ptr<Buffer> allocate(std::size_t bytes) override {
    return std::make_unique<HostBuffer>(bytes);
  }

  void write(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) override {
    check_range(dst, offset, bytes, "write destination");
    if (bytes) std::memcpy(bytes_of(dst, "write destination") + offset, src, bytes);
  }

  void read(const Buffer& src, std::size_t offset, void* dst, std::size_t bytes) override {
    check_range(src, offset, bytes, "read source");
    if (bytes) std::memcpy(dst, bytes_of(src, "read source") + offset, bytes);
  }

  void copy(const Buffer& src, std::size_t src_offset, Buffer& dst, std::size_t dst_offset,
            std::size_t bytes) override {
    check_range(src, src_offset, bytes, "copy source");
    check_range(dst, dst_offset, bytes, "copy destination");
    if (bytes)
      std::memmove(bytes_of(dst, "copy destination") + dst_offset,
                   bytes_of(src, "copy source") + src_offset, bytes);
  }

  void copy_rows(const Buffer& src, Buffer& dst, const std::vector<RowRun>& runs,
                 std::size_t row_bytes) override {
    for (const RowRun& r : runs) {
      check_range(src, r.src_row * row_bytes, r.rows * row_bytes, "copy_rows source");
      check_range(dst, r.dst_row * row_bytes, r.rows * row_bytes, "copy_rows destination");
    }
    const unsigned char* s = bytes_of(src, "copy_rows source");
    unsigned char* d = bytes_of(dst, "copy_rows destination");
    for (const RowRun& r : runs)
      if (r.rows) std::memmove(d + r.dst_row * row_bytes, s + r.src_row * row_bytes, r.rows * row_bytes);
  }

  void rotate(const CodecParams& params, const Buffer& in, ElementType in_type, std::size_t rows,
              Buffer& out, std::size_t out_row) override {
    params.validate();
    const std::size_t D = std::size_t(params.head_dim);
    const std::size_t in_elem = in_type == ElementType::f32 ? 4 : 2;
    check_range(in, 0, rows * D * in_elem, "rotate input");
    check_range(out, out_row * D * 2, rows * D * 2, "rotate output");
    const unsigned char* src = bytes_of(in, "rotate input");
    half_bits* dst = reinterpret_cast<half_bits*>(bytes_of(out, "rotate output")) + out_row * D;
    // Chunks of at least 256 rows: rotation is cheap, threads only pay off for prefill.
    const std::size_t chunk = 256, chunks = (rows + chunk - 1) / chunk;
    pool_->parallel_for(chunks, [&](std::size_t c) {
      const std::size_t r0 = c * chunk, r1 = std::min(rows, (c + 1) * chunk);
      if (in_type == ElementType::f32)
        cpu::simd::rotate_rows(reinterpret_cast<const float*>(src) + r0 * D, dst + r0 * D,
                               r1 - r0, params.head_dim);
      else
        cpu::simd::rotate_rows(reinterpret_cast<const half_bits*>(src) + r0 * D, dst + r0 * D,
                               r1 - r0, params.head_dim);
    });
  }

  void quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                const std::vector<QuantizeJob>& jobs, Buffer& records) override {
    const RecordLayout L = RecordLayout::make(params);
    const std::size_t tile_bytes = std::size_t(L.group) * L.head_dim * 2;
    for (const QuantizeJob& j : jobs) {
      check_range(k_rows, std::size_t(j.src_row) * L.head_dim * 2, tile_bytes, "quantize K rows");
      check_range(v_rows, std::size_t(j.src_row) * L.head_dim * 2, tile_bytes, "quantize V rows");
      check_range(records, std::size_t(j.dst_record) * L.bytes, L.bytes, "quantize record");
    }
    const half_bits* k = reinterpret_cast<const half_bits*>(bytes_of(k_rows, "quantize K rows"));
    const half_bits* v = reinterpret_cast<const half_bits*>(bytes_of(v_rows, "quantize V rows"));
    std::uint8_t* rec = bytes_of(records, "quantize records");
    pool_->parallel_for(jobs.size(), [&](std::size_t i) {
      const std::size_t row = std::size_t(jobs[i].src_row) * L.head_dim;
      cpu::simd::quantize_tile(params, k + row, v + row,
                               rec + std::size_t(jobs[i].dst_record) * L.bytes);
    });
  }

  void dequantize(const CodecParams& params, const Buffer& records,
                  const std::vector<std::uint32_t>& record_ids, Frame frame, Buffer& k_out,
                  Buffer& v_out) override {
    const RecordLayout L = RecordLayout::make(params);
    const std::size_t tile_values = std::size_t(L.group) * L.head_dim;
    for (std::uint32_t id : record_ids)
      check_range(records, std::size_t(id) * L.bytes, L.bytes, "dequantize record");
    check_range(k_out, 0, record_ids.size() * tile_values * 2, "dequantize K output");
    check_range(v_out, 0, record_ids.size() * tile_values * 2, "dequantize V output");
    const std::uint8_t* rec = bytes_of(records, "dequantize records");
    half_bits* k = reinterpret_cast<half_bits*>(bytes_of(k_out, "dequantize K output"));
    half_bits* v = reinterpret_cast<half_bits*>(bytes_of(v_out, "dequantize V output"));
    for (std::size_t i = 0; i < record_ids.size(); ++i) {
      try {
        validate_records(params, rec + std::size_t(record_ids[i]) * L.bytes, 1);
      } catch (const CorruptRecord& e) {
        throw CorruptRecord("dequantize: record " + std::to_string(record_ids[i]) + " (record_ids[" +
                            std::to_string(i) + "]): " + e.what());
      }
    }
    pool_->parallel_for(record_ids.size(), [&](std::size_t i) {
      cpu::simd::dequantize_tile(params, rec + std::size_t(record_ids[i]) * L.bytes,
                                 k + i * tile_values, v + i * tile_values, frame);
    });
  }

  void attend(const AttendArgs& a) override {
    const RecordLayout L = RecordLayout::make(a.params);
    const std::size_t D = std::size_t(L.head_dim), S = std::size_t(a.num_seqs);
    if (a.num_seqs < 0 || a.num_kv_heads <= 0 || a.num_q_heads <= 0)
      throw InvalidArgument("attend: num_seqs " + std::to_string(a.num_seqs) + ", num_q_heads " +
                            std::to_string(a.num_q_heads) + ", num_kv_heads " +
                            std::to_string(a.num_kv_heads) + " must be positive");
    if (!a.q || !a.out || !a.records || !a.block_tables || !a.sink || !a.tail || !a.sink_v ||
        !a.tail_v || !a.seq_info)
      throw InvalidArgument("attend: a buffer of AttendArgs is null");
    const std::size_t Hk = std::size_t(a.num_kv_heads), Hq = std::size_t(a.num_q_heads);
    check_range(*a.q, 0, S * Hq * D * 4, "attend q");
    check_range(*a.out, 0, S * Hq * D * (a.out_type == ElementType::f32 ? 4 : 2), "attend out");
    check_range(*a.block_tables, 0, S * std::size_t(a.max_blocks) * 4, "attend block_tables");
    check_range(*a.seq_info, 0, S * 16, "attend seq_info");
    cpu::AttendRecordsHost h;
    h.params = a.params;
    h.num_seqs = a.num_seqs;
    h.num_q_heads = a.num_q_heads;
    h.num_kv_heads = a.num_kv_heads;
    h.scale = a.scale;
    h.q = reinterpret_cast<const float*>(bytes_of(*a.q, "attend q"));
    h.out = bytes_of(*a.out, "attend out");
    h.out_type = a.out_type;
    h.records = bytes_of(*a.records, "attend records");
    h.num_blocks_in_pool = a.records->size() / (Hk * L.bytes);
    h.block_tables = reinterpret_cast<const std::int32_t*>(bytes_of(*a.block_tables, "attend block_tables"));
    h.max_blocks = a.max_blocks;
    h.sink = reinterpret_cast<const half_bits*>(bytes_of(*a.sink, "attend sink"));
    h.tail = reinterpret_cast<const half_bits*>(bytes_of(*a.tail, "attend tail"));
    h.sink_v = reinterpret_cast<const half_bits*>(bytes_of(*a.sink_v, "attend sink_v"));
    h.tail_v = reinterpret_cast<const half_bits*>(bytes_of(*a.tail_v, "attend tail_v"));
    h.sink_capacity = a.sink_capacity;
    h.tail_capacity = a.tail_capacity;
    const std::size_t sink_slot = Hk * std::size_t(std::max(a.sink_capacity, 0)) * D * 2;
    const std::size_t tail_slot = Hk * std::size_t(std::max(a.tail_capacity, 0)) * D * 2;
    const std::size_t sink_bytes = std::min(a.sink->size(), a.sink_v->size());
    const std::size_t tail_bytes = std::min(a.tail->size(), a.tail_v->size());
    h.sink_slots = sink_slot ? sink_bytes / sink_slot : SIZE_MAX;
    h.tail_slots = tail_slot ? tail_bytes / tail_slot : SIZE_MAX;
    h.seq_info = reinterpret_cast<const std::int32_t*>(bytes_of(*a.seq_info, "attend seq_info"));
    cpu::attend_records(h, *pool_);
  }

  void attend_fp16(const AttendFp16Args& a) override {
    if (a.num_seqs < 0 || a.num_kv_heads <= 0 || a.num_q_heads <= 0 || a.capacity < 0)
      throw InvalidArgument("attend_fp16: num_seqs, heads and capacity must be positive");
    if (!a.q || !a.out || !a.k || !a.v || !a.seq_lens)
      throw InvalidArgument("attend_fp16: a buffer of AttendFp16Args is null");
    validate_head_dim(a.head_dim, "attend_fp16 head_dim");
    const std::size_t D = std::size_t(a.head_dim), S = std::size_t(a.num_seqs);
    const std::size_t Hq = std::size_t(a.num_q_heads), Hk = std::size_t(a.num_kv_heads);
    check_range(*a.q, 0, S * Hq * D * 4, "attend_fp16 q");
    check_range(*a.out, 0, S * Hq * D * (a.out_type == ElementType::f32 ? 4 : 2), "attend_fp16 out");
    check_range(*a.k, 0, S * Hk * std::size_t(a.capacity) * D * 2, "attend_fp16 k");
    check_range(*a.v, 0, S * Hk * std::size_t(a.capacity) * D * 2, "attend_fp16 v");
    check_range(*a.seq_lens, 0, S * 4, "attend_fp16 seq_lens");
    cpu::AttendFp16Host h;
    h.num_seqs = a.num_seqs;
    h.num_q_heads = a.num_q_heads;
    h.num_kv_heads = a.num_kv_heads;
    h.head_dim = a.head_dim;
    h.scale = a.scale;
    h.q = reinterpret_cast<const float*>(bytes_of(*a.q, "attend_fp16 q"));
    h.out = bytes_of(*a.out, "attend_fp16 out");
    h.out_type = a.out_type;
    h.k = reinterpret_cast<const half_bits*>(bytes_of(*a.k, "attend_fp16 k"));
    h.v = reinterpret_cast<const half_bits*>(bytes_of(*a.v, "attend_fp16 v"));
    h.capacity = a.capacity;
    h.seq_lens = reinterpret_cast<const std::int32_t*>(bytes_of(*a.seq_lens, "attend_fp16 seq_lens"));
    h.kv_frame = a.kv_frame;
    cpu::attend_fp16(h, *pool_);
  }

 private:
  std::shared_ptr<ThreadPool> pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(CpuThreads threads) {
  // The default size shares the process-wide pool: several caches or tools in one process then
  // run on one set of threads instead of one set each.
  if (threads.count == 0)
    return std::make_unique<CpuBackend>(
        std::shared_ptr<ThreadPool>(&ThreadPool::shared(), [](ThreadPool*) {}));
  return std::make_unique<CpuBackend>(std::make_shared<ThreadPool>(threads.count));
}

std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<ThreadPool> pool) {
  return std::make_unique<CpuBackend>(std::move(pool));
}

}  // namespace kvarn_cl
