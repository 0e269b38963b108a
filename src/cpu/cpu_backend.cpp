// The CPU backend: Buffers are host memory; every batched call runs the SIMD paths of the CPU
// codec (src/cpu/simd.hpp, held to the scalar reference by the tests) on the backend's one
// persistent thread pool. It is the library's fallback.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <vector>

#include <unistd.h>

#include "backend_api/checks.hpp"
#include "backend_api/host_memory.hpp"
#include "cpu/decode_attention.hpp"
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

// The caller's memory as a Buffer of this backend (Backend::view_host).
class HostView final : public Buffer {
 public:
  HostView(void* data, std::size_t bytes) : data_(data), bytes_(bytes) {}
  std::size_t size() const noexcept override { return bytes_; }
  void* host_data() noexcept override { return data_; }

 private:
  void* data_;
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

// n fp16 values, none NaN, Inf or beyond the codec's bound: the device checks of the decode step
// (kernels/rotate.cl kvarn_append_rows, quantize.cl's status word), written once for the CPU.
bool in_codec_range(const half_bits* v, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (!(std::fabs(half_to_float(v[i])) <= kMaxRotatedMagnitude)) return false;
  return true;
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

  BackendKind kind() const noexcept override { return BackendKind::cpu; }

  // Physical memory, and the process's own limits (host_memory.hpp).
  std::size_t memory_capacity() const noexcept override { return host_memory_capacity(); }

  std::unique_ptr<Buffer> allocate(std::size_t bytes) override {
    return std::make_unique<HostBuffer>(bytes);
  }
  std::unique_ptr<Buffer> view_host(void* data, std::size_t bytes) override {
    return std::make_unique<HostView>(data, bytes);
  }

  void write(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) override {
    check_range(dst, offset, bytes, "write: dst");
    if (bytes) std::memcpy(bytes_of(dst, "write: dst") + offset, src, bytes);
  }

  void read(const Buffer& src, std::size_t offset, void* dst, std::size_t bytes) override {
    check_range(src, offset, bytes, "read: src");
    if (bytes) std::memcpy(dst, bytes_of(src, "read: src") + offset, bytes);
  }

  void copy(const Buffer& src, std::size_t src_offset, Buffer& dst, std::size_t dst_offset,
            std::size_t bytes) override {
    check_range(src, src_offset, bytes, "copy: src");
    check_range(dst, dst_offset, bytes, "copy: dst");
    if (bytes)
      std::memmove(bytes_of(dst, "copy: dst") + dst_offset, bytes_of(src, "copy: src") + src_offset,
                   bytes);
  }

  void copy_rows(const Buffer& src, Buffer& dst, const std::vector<RowRun>& runs,
                 std::size_t row_bytes) override {
    check_copy_rows(src, dst, runs, row_bytes);
    const unsigned char* s = bytes_of(src, "copy_rows: src");
    unsigned char* d = bytes_of(dst, "copy_rows: dst");
    for (const RowRun& r : runs)
      if (r.rows)
        std::memmove(d + r.dst_row * row_bytes, s + r.src_row * row_bytes, r.rows * row_bytes);
  }

  void rotate(const CodecParams& params, const Buffer& in, ElementType in_type, std::size_t rows,
              Buffer& out, std::size_t out_row) override {
    check_rotate(params, in, in_type, rows, out, out_row);
    const std::size_t D = std::size_t(params.head_dim);
    const unsigned char* src = bytes_of(in, "rotate: in");
    half_bits* dst = reinterpret_cast<half_bits*>(bytes_of(out, "rotate: out")) + out_row * D;
    // Chunks of at least 256 rows: rotation is cheap, threads only pay off for prefill.
    const std::size_t chunk = 256, chunks = (rows + chunk - 1) / chunk;
    pool_->parallel_for(chunks, [&](std::size_t c) {
      const std::size_t r0 = c * chunk, r1 = std::min(rows, (c + 1) * chunk);
      if (in_type == ElementType::f32)
        cpu::simd::rotate_rows(reinterpret_cast<const float*>(src) + r0 * D, dst + r0 * D, r1 - r0,
                               params.head_dim);
      else
        cpu::simd::rotate_rows(reinterpret_cast<const half_bits*>(src) + r0 * D, dst + r0 * D,
                               r1 - r0, params.head_dim);
    });
  }

  void quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                const std::vector<QuantizeJob>& jobs, Buffer& records) override {
    const RecordLayout L = check_quantize(params, k_rows, v_rows, jobs, records);
    const half_bits* k = reinterpret_cast<const half_bits*>(bytes_of(k_rows, "quantize: k_rows"));
    const half_bits* v = reinterpret_cast<const half_bits*>(bytes_of(v_rows, "quantize: v_rows"));
    std::uint8_t* rec = bytes_of(records, "quantize: records");
    pool_->parallel_for(jobs.size(), [&](std::size_t i) {
      const std::size_t row = std::size_t(jobs[i].src_row) * L.head_dim;
      cpu::simd::quantize_tile(params, k + row, v + row,
                               rec + std::size_t(jobs[i].dst_record) * L.bytes);
    });
  }

  void dequantize(const CodecParams& params, const Buffer& records,
                  const std::vector<std::uint32_t>& record_ids, Frame frame, Buffer& k_out,
                  Buffer& v_out) override {
    const RecordLayout L = check_dequantize(params, records, record_ids, k_out, v_out);
    const std::size_t tile_values = std::size_t(L.group) * L.head_dim;
    const std::uint8_t* rec = bytes_of(records, "dequantize: records");
    half_bits* k = reinterpret_cast<half_bits*>(bytes_of(k_out, "dequantize: k_out"));
    half_bits* v = reinterpret_cast<half_bits*>(bytes_of(v_out, "dequantize: v_out"));
    for (std::size_t i = 0; i < record_ids.size(); ++i) {
      try {
        validate_records(params, rec + std::size_t(record_ids[i]) * L.bytes, 1);
      } catch (const CorruptRecord& e) {
        throw CorruptRecord("dequantize: record " + std::to_string(record_ids[i]) +
                            " (record_ids[" + std::to_string(i) + "]): " + e.what());
      }
    }
    pool_->parallel_for(record_ids.size(), [&](std::size_t i) {
      cpu::simd::dequantize_tile(params, rec + std::size_t(record_ids[i]) * L.bytes,
                                 k + i * tile_values, v + i * tile_values, frame);
    });
  }

  // The decode step's calls: the host completes them before returning, with the OpenCL
  // backend's semantics (failures go to the status word, the rows are stored all the same).
  void append_rows(const AppendRowsArgs& a) override {
    check_append_rows(a);
    const std::size_t D = std::size_t(a.head_dim);
    const std::size_t in_row = D * element_bytes(a.in_type);
    std::uint32_t* status =
        reinterpret_cast<std::uint32_t*>(bytes_of(*a.status.words, "append_rows: status")) +
        a.status.index;
    std::vector<half_bits> rotated(D);
    for (int part = 0; part < 2; ++part) {
      const unsigned char* in = bytes_of(part == 0 ? *a.k : *a.v, "append_rows: k/v");
      half_bits* sink = reinterpret_cast<half_bits*>(
          bytes_of(part == 0 ? *a.sink_k : *a.sink_v, "append_rows: sink"));
      half_bits* tail = reinterpret_cast<half_bits*>(
          bytes_of(part == 0 ? *a.tail_k : *a.tail_v, "append_rows: tail"));
      for (std::size_t r = 0; r < a.rows; ++r) {
        if (a.in_type == ElementType::f32)
          cpu::simd::rotate_rows(reinterpret_cast<const float*>(in + r * in_row), rotated.data(), 1,
                                 a.head_dim);
        else
          cpu::simd::rotate_rows(reinterpret_cast<const half_bits*>(in + r * in_row),
                                 rotated.data(), 1, a.head_dim);
        if (!in_codec_range(rotated.data(), D))
          *status = std::min(*status, std::uint32_t(r * 2 + std::size_t(part)));
        const std::int32_t d = a.host_destinations[r];
        half_bits* dst =
            d >= 0 ? tail + std::size_t(d) * D : sink + std::size_t(-(std::int64_t(d) + 1)) * D;
        std::memcpy(dst, rotated.data(), D * 2);
      }
    }
  }

  void quantize_deferred(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                         const Buffer& jobs, const std::vector<QuantizeJob>& host_jobs,
                         Buffer& records, StatusWord status) override {
    const RecordLayout L = check_quantize(params, k_rows, v_rows, host_jobs, records);
    check_status_word(status, "quantize_deferred");
    check_range(jobs, 0, host_jobs.size() * sizeof(QuantizeJob), "quantize_deferred: jobs");
    std::uint32_t* word =
        reinterpret_cast<std::uint32_t*>(bytes_of(*status.words, "quantize_deferred: status")) +
        status.index;
    const half_bits* k = reinterpret_cast<const half_bits*>(bytes_of(k_rows, "quantize: k_rows"));
    const half_bits* v = reinterpret_cast<const half_bits*>(bytes_of(v_rows, "quantize: v_rows"));
    const std::size_t tile_values = std::size_t(L.group) * L.head_dim;
    // A tile that cannot be quantized is reported and skipped (its record is left as it was), as
    // the kernel's early exit does; the others are quantized.
    std::vector<QuantizeJob> good;
    for (std::size_t i = 0; i < host_jobs.size(); ++i) {
      const std::size_t row = std::size_t(host_jobs[i].src_row) * L.head_dim;
      bool tile_ok = true;
      for (int part = 0; part < 2; ++part) {
        const bool ok = in_codec_range((part == 0 ? k : v) + row, tile_values);
        if (!ok) *word = std::min(*word, std::uint32_t(i * 2 + std::size_t(part)));
        tile_ok = tile_ok && ok;
      }
      if (tile_ok) good.push_back(host_jobs[i]);
    }
    quantize(params, k_rows, v_rows, good, records);
  }

  void attend(const AttendArgs& a) override {
    const AttendPools pools = check_attend(a);
    cpu::AttendRecordsHost h;
    h.params = a.params;
    h.num_seqs = a.num_seqs;
    h.num_q_heads = a.num_q_heads;
    h.num_kv_heads = a.num_kv_heads;
    h.scale = a.scale;
    h.q = reinterpret_cast<const float*>(bytes_of(*a.q, "attend: q"));
    h.out = bytes_of(*a.out, "attend: out");
    h.out_type = a.out_type;
    h.records = bytes_of(*a.records, "attend: records");
    h.block_tables =
        reinterpret_cast<const std::int32_t*>(bytes_of(*a.block_tables, "attend: block_tables"));
    h.sink = reinterpret_cast<const half_bits*>(bytes_of(*a.sink, "attend: sink"));
    h.tail = reinterpret_cast<const half_bits*>(bytes_of(*a.tail, "attend: tail"));
    h.sink_v = reinterpret_cast<const half_bits*>(bytes_of(*a.sink_v, "attend: sink_v"));
    h.tail_v = reinterpret_cast<const half_bits*>(bytes_of(*a.tail_v, "attend: tail_v"));
    h.pools = pools;
    h.seq_info = reinterpret_cast<const SeqInfo*>(bytes_of(*a.seq_info, "attend: seq_info"));
    cpu::attend_records(h, *pool_);
  }

  void attend_fp16(const AttendFp16Args& a) override {
    check_attend_fp16(a);
    cpu::AttendFp16Host h;
    h.num_seqs = a.num_seqs;
    h.num_q_heads = a.num_q_heads;
    h.num_kv_heads = a.num_kv_heads;
    h.head_dim = a.head_dim;
    h.scale = a.scale;
    h.q = reinterpret_cast<const float*>(bytes_of(*a.q, "attend_fp16: q"));
    h.out = bytes_of(*a.out, "attend_fp16: out");
    h.out_type = a.out_type;
    h.k = reinterpret_cast<const half_bits*>(bytes_of(*a.k, "attend_fp16: k"));
    h.v = reinterpret_cast<const half_bits*>(bytes_of(*a.v, "attend_fp16: v"));
    h.capacity = a.capacity;
    h.seq_lens =
        reinterpret_cast<const std::int32_t*>(bytes_of(*a.seq_lens, "attend_fp16: seq_lens"));
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
