// The backend seam (docs/ARCHITECTURE.md): one interface, a CPU and an OpenCL implementation.
// Everything the cache and the tools ask of a device goes through these batched calls; the callers
// never loop over tiles issuing one call each.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvarn_cl/cpu_threads.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/half.hpp"

struct _cl_event;  // OpenCL's cl_event, declared by its C name (no CL/cl.h here)

namespace kvarn_cl {

class ThreadPool;  // kvarn_cl/thread_pool.hpp

// Which backend: asked of make_backend() (cpu, opencl, or automatic: let the library choose), and
// answered by Backend::kind() (cpu or opencl, never automatic).
enum class BackendKind { cpu, opencl, automatic };
// "cpu", "opencl", "auto".
const char* to_string(BackendKind kind) noexcept;
// "cpu", "opencl" / "cl", "auto" / "automatic", any case; InvalidArgument naming `argument`.
BackendKind parse_backend_kind(const std::string& name, const std::string& argument = "backend");

// Memory owned by a backend: host memory for the CPU backend, a cl_mem for the OpenCL backend.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual std::size_t size() const noexcept = 0;
  // Host address for host-resident buffers (CPU backend), nullptr for device buffers.
  virtual void* host_data() noexcept { return nullptr; }
  const void* host_data() const noexcept { return const_cast<Buffer*>(this)->host_data(); }
};

// One tile to quantize: G rotated fp16 rows of K (and of V) starting at row `src_row` of the
// source buffers, written as record number `dst_record` of the record pool.
struct QuantizeJob {
  std::uint32_t src_row;
  std::uint32_t dst_record;
};

// Where one sequence's tokens are, as attend() reads it: seq_info holds one of these per
// sequence (int32 x 4; the kernels read it as an int4 into AtSeqInfo, kernels/attention_shared.cl).
struct SeqInfo {
  std::int32_t slot;        // row of the sequence in the fp16 sink and tail pools
  std::int32_t sink_len;    // fp16 sink tokens, the first of the sequence
  std::int32_t num_blocks;  // records in its block-table row, after the sink
  std::int32_t tail_len;    // fp16 tail tokens, the last of the sequence
};
static_assert(sizeof(SeqInfo) == 16, "SeqInfo is mirrored as an int4 by the kernels");

// Decode attention over a paged, compressed cache (SPEC §3–4), one query token per sequence,
// one layer. All index buffers are int32. Token order of a sequence: sink, records in block-table
// order, tail.
struct AttendArgs {
  CodecParams params;
  int num_seqs = 0;
  int num_q_heads = 0;   // Hq, a multiple of num_kv_heads
  int num_kv_heads = 0;  // Hk
  float scale = 0;       // score scale, typically 1/sqrt(D)

  const Buffer* q = nullptr;  // f32 [num_seqs][Hq][D], original frame
  Buffer* out = nullptr;      // out_type [num_seqs][Hq][D], original frame
  ElementType out_type = ElementType::f32;

  // Records pool: record id r of KV head h of block b is at ((b * Hk) + h) * record_bytes.
  const Buffer* records = nullptr;
  // Block tables: int32 [num_seqs][max_blocks] of block ids, row s holds seq_blocks[s] valid ids.
  const Buffer* block_tables = nullptr;
  int max_blocks = 0;

  // fp16 rotated rows of the sink and tail: [slot][Hk][capacity][D]; a sequence's slot is its
  // row in the fp16 pools (seq_slot[s]). Sink capacity is sink_capacity tokens, tail tail_capacity.
  // `sink` and `tail` hold the K rows; `sink_v` and `tail_v` the V rows at the same row index
  // (separate K and V pools, like the k_rows/v_rows of quantize(), so a tile of the tail can be
  // quantized in place).
  const Buffer* sink = nullptr;
  const Buffer* tail = nullptr;
  const Buffer* sink_v = nullptr;
  const Buffer* tail_v = nullptr;
  int sink_capacity = 0;
  int tail_capacity = 0;

  // SeqInfo [num_seqs]: where each sequence's tokens are.
  const Buffer* seq_info = nullptr;

  // Optional host copies of the values in seq_info and block_tables (a cache has them anyway).
  // Given, a device backend validates the indices and sizes its launch from them and never
  // reads the index buffers back (no blocking round trip on the decode path); absent, it reads
  // them back first. They must equal what the buffers hold when the call's kernels run.
  const SeqInfo* host_seq_info = nullptr;           // [num_seqs]
  const std::int32_t* host_block_tables = nullptr;  // [num_seqs][max_blocks]
};

// One run of consecutive rows to copy: rows [src_row, src_row + rows) of the source to
// [dst_row, dst_row + rows) of the destination (rows of row_bytes bytes each).
struct RowRun {
  std::uint64_t src_row;
  std::uint64_t dst_row;
  std::uint64_t rows;
};

// One word of a status buffer (uint32 words, kNoDeviceFailure when nothing failed) that a device
// check writes its first failure into with an atomic minimum, instead of the call reading it back:
// the decode step (include/kvarn_cl/decode_step.hpp) reads all its words once, at its
// synchronization point.
constexpr std::uint32_t kNoDeviceFailure = 0xFFFFFFFFu;
struct StatusWord {
  Buffer* words = nullptr;
  std::size_t index = 0;
};

// The decode step's append (Backend::append_rows): `rows` rows of K and of V (in_type, original
// frame, [rows][head_dim]) rotated, range-checked and stored each at its own row of the sink or
// the tail pools, in one launch.
struct AppendRowsArgs {
  int head_dim = 0;
  const Buffer* k = nullptr;
  const Buffer* v = nullptr;
  ElementType in_type = ElementType::f16;
  std::size_t rows = 0;
  // int32 [rows]: d >= 0 stores row r at row d of tail_k/tail_v; d < 0 at row -(d + 1) of
  // sink_k/sink_v. host_destinations holds the same values on the host (validated there, never
  // read back); they must equal the buffer's content when the launch runs.
  const Buffer* destinations = nullptr;
  const std::int32_t* host_destinations = nullptr;
  Buffer* sink_k = nullptr;
  Buffer* sink_v = nullptr;
  Buffer* tail_k = nullptr;
  Buffer* tail_v = nullptr;
  // A rotated value that is NaN, Inf or of magnitude above kMaxRotatedMagnitude makes the launch
  // write min(2 * row + (0 for K, 1 for V)) into this word. The row is stored all the same (the
  // caller drops it when it reads the word).
  StatusWord status;
};

// Plain decode attention over an uncompressed fp16 cache, one query token per sequence: the fp16
// baseline, and the second half of the "materialize" path (dequantize, then attend over fp16).
struct AttendFp16Args {
  int num_seqs = 0;
  int num_q_heads = 0;   // Hq, a multiple of num_kv_heads
  int num_kv_heads = 0;  // Hk
  int head_dim = 0;      // D
  float scale = 0;

  const Buffer* q = nullptr;  // f32 [num_seqs][Hq][D], original frame
  Buffer* out = nullptr;      // out_type [num_seqs][Hq][D], original frame
  ElementType out_type = ElementType::f32;

  // fp16 rows [num_seqs][Hk][capacity][D]; sequence s uses rows [0, seq_lens[s]) of each head.
  const Buffer* k = nullptr;
  const Buffer* v = nullptr;
  int capacity = 0;
  const Buffer* seq_lens = nullptr;  // int32 [num_seqs]
  // Optional host copy of seq_lens (as AttendArgs::host_seq_info): validation and launch sizing
  // without reading seq_lens back.
  const std::int32_t* host_seq_lens = nullptr;
  // rotated: k/v hold rotated rows (a materialized KVarN cache): q is rotated first and the
  // output rotated back. original: a plain fp16 cache, no rotation at all.
  Frame kv_frame = Frame::original;

  // The arguments of one call with the usual defaults: scale 1/sqrt(head_dim), f32 output, no
  // host copy of seq_lens (set scale, out_type or host_seq_lens afterwards where they differ).
  static AttendFp16Args over(int num_seqs, int num_q_heads, int num_kv_heads, int head_dim,
                             const Buffer& q, Buffer& out, const Buffer& k, const Buffer& v,
                             int capacity, const Buffer& seq_lens, Frame kv_frame) {
    AttendFp16Args a;
    a.num_seqs = num_seqs;
    a.num_q_heads = num_q_heads;
    a.num_kv_heads = num_kv_heads;
    a.head_dim = head_dim;
    a.scale = head_dim > 0 ? 1.0f / std::sqrt(float(head_dim)) : 0.0f;
    a.q = &q;
    a.out = &out;
    a.k = &k;
    a.v = &v;
    a.capacity = capacity;
    a.seq_lens = &seq_lens;
    a.kv_frame = kv_frame;
    return a;
  }
};

// Every implementation checks the arguments of each call with the same rules, written once in
// src/backend_api/checks.hpp: a bad argument is an InvalidArgument naming the call, the argument and
// its value, never an out-of-bounds access on the host or the device.
class Backend {
 public:
  virtual ~Backend() = default;
  // "cpu (N threads)" or "opencl: <platform> / <device>".
  virtual std::string name() const = 0;
  // The implementation: BackendKind::cpu or BackendKind::opencl (a wrapper answers for what it
  // wraps).
  virtual BackendKind kind() const noexcept = 0;
  // Builds now what the first calls at the default geometry need (an OpenCL backend: the default
  // codec program and the attention kernels its launch policy can pick), so that a device whose
  // kernels do not build fails here, not at the first append or attend. make_backend(automatic)
  // calls it before it accepts a device. Throws what such a build throws.
  virtual void warm_up() {}

  virtual std::unique_ptr<Buffer> allocate(std::size_t bytes) = 0;
  // A Buffer over the caller's host memory (neither owned nor copied; it must outlive the Buffer)
  // where this backend's buffers are host memory; nullptr where they are not (a device backend:
  // the caller then allocates and copies). Lets host callers skip a copy (rotate_host & co).
  virtual std::unique_ptr<Buffer> view_host(void* /*data*/, std::size_t /*bytes*/) {
    return nullptr;
  }
  virtual void write(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) = 0;
  // Like write(), but returns without waiting for the device: the bytes are copied before the
  // call returns and reach dst before any later call's work runs (in order). Device backends
  // override it so that small per-step uploads (queries, index lists) do not wait for the
  // queue to drain.
  virtual void write_async(Buffer& dst, std::size_t offset, const void* src, std::size_t bytes) {
    write(dst, offset, src, bytes);
  }
  virtual void read(const Buffer& src, std::size_t offset, void* dst, std::size_t bytes) = 0;
  virtual void copy(const Buffer& src, std::size_t src_offset, Buffer& dst, std::size_t dst_offset,
                    std::size_t bytes) = 0;

  // rows × D values (f16 or f32, original frame) at `in` -> rotated fp16 rows at `out`
  // starting at row out_row.
  virtual void rotate(const CodecParams& params, const Buffer& in, ElementType in_type,
                      std::size_t rows, Buffer& out, std::size_t out_row) = 0;

  // One launch for every job: rotated fp16 K/V rows -> records (layout from params).
  virtual void quantize(const CodecParams& params, const Buffer& k_rows, const Buffer& v_rows,
                        const std::vector<QuantizeJob>& jobs, Buffer& records) = 0;

  // One launch: record ids -> fp16 rows, tile i of the list to rows [i*G, (i+1)*G) of k_out/v_out.
  virtual void dequantize(const CodecParams& params, const Buffer& records,
                          const std::vector<std::uint32_t>& record_ids, Frame frame, Buffer& k_out,
                          Buffer& v_out) = 0;

  // Fused decode attention straight from the records (one launch + merge).
  virtual void attend(const AttendArgs& args) = 0;

  // Batched row copies between (or inside) buffers, one launch; used by the cache to scatter
  // appended rows into the sink/tail pools and to gather materialized rows. src and dst may be the
  // same buffer (the cache's tail shift after commit); no run's source overlaps any destination. The default issues one copy() per run; backends override it with
  // one launch.
  virtual void copy_rows(const Buffer& src, Buffer& dst, const std::vector<RowRun>& runs,
                         std::size_t row_bytes) {
    for (const RowRun& r : runs)
      if (r.rows != 0)
        copy(src, r.src_row * row_bytes, dst, r.dst_row * row_bytes, r.rows * row_bytes);
  }

  // Plain fp16 decode attention (baseline and materialize path). Default: Unsupported.
  virtual void attend_fp16(const AttendFp16Args& /*args*/) {
    throw Unsupported("attend_fp16 is not implemented by backend '" + name() + "'");
  }

  // Index of the first of `rows` fp16 rows (head_dim channels each) at the start of `rows_buf`
  // that holds NaN, Inf or a value of magnitude above max_abs; -1 when every row is in range. The
  // cache checks device-resident input with it before it stores anything. The default reads the
  // rows back to the host (src/backend_api/checks.cpp); backends override it with one launch.
  virtual std::int64_t first_row_out_of_range(const Buffer& rows_buf, std::size_t rows,
                                              int head_dim, float max_abs);

  // --- the decode step (KVCache::begin_step): calls that only enqueue --------------------------
  // Rotation, range check and scatter of one row per (sequence, KV head) into the fp16 pools, in
  // one launch; failures go to args.status (no read-back). Default: Unsupported.
  virtual void append_rows(const AppendRowsArgs& /*args*/) {
    throw Unsupported("append_rows is not implemented by backend '" + name() + "'");
  }
  // quantize() with the jobs already in a backend buffer (uint32 pairs {src_row, dst_record}, the
  // layout of QuantizeJob; host_jobs holds the same values, for validation) and a tile that cannot
  // be quantized (NaN, Inf, beyond the codec's bound) reported as min(2 * job + (0 K, 1 V)) in
  // `status` instead of thrown. Default: Unsupported.
  virtual void quantize_deferred(const CodecParams& /*params*/, const Buffer& /*k_rows*/,
                                 const Buffer& /*v_rows*/, const Buffer& /*jobs*/,
                                 const std::vector<QuantizeJob>& /*host_jobs*/, Buffer& /*records*/,
                                 StatusWord /*status*/) {
    throw Unsupported("quantize_deferred is not implemented by backend '" + name() + "'");
  }
  // Ordering with a caller's own device work. wait_for: work enqueued after it starts only once
  // every event completed (no host wait). enqueue_marker: a new event (the caller releases it)
  // that completes when all work enqueued so far has. Host backends complete each call before it
  // returns: they refuse events (Unsupported, they have none to wait on) and return nullptr.
  virtual void wait_for(const std::vector<_cl_event*>& events) {
    if (!events.empty())
      throw Unsupported("wait_for: backend '" + name() + "' cannot wait for OpenCL events");
  }
  virtual _cl_event* enqueue_marker() { return nullptr; }

  // Bytes this backend's buffers can hold in all (device global memory; host physical memory for
  // the CPU), 0 when unknown. KVCache checks its total size against it before allocating.
  virtual std::size_t memory_capacity() const noexcept { return 0; }

  // Waits for queued work (no-op on the CPU).
  virtual void finish() {}
};

// --- the tile codec over host memory, on any backend --------------------------------------------
// For callers whose rows and records live in host memory (the C API, kvarn-cl quantize and
// dequantize): each uploads, runs one launch per step over the whole batch, and reads the result
// back. Rows are token-major [rows][head_dim]; `tiles` tiles hold G rows each. They throw what the
// Backend calls throw, and InvalidArgument for a batch too large for one call.

// rows values of in_type (f16 or f32), original frame -> rotated fp16 rows.
void rotate_host(Backend& backend, const CodecParams& params, const void* in, ElementType in_type,
                 std::size_t rows, half_bits* out);
// tiles * G rows of K and of V -> tiles records, back to back. Rows in the original frame (f16 or
// f32) are rotated on the backend first; rotated rows (f16 only, e.g. from rotate_host) are
// quantized as they are.
void quantize_host(Backend& backend, const CodecParams& params, const void* k, const void* v,
                   ElementType in_type, Frame in_frame, std::size_t tiles, std::uint8_t* records);
// tiles records, back to back -> tiles * G rows of K and of V, in `frame`, as out_type.
void dequantize_host(Backend& backend, const CodecParams& params, const std::uint8_t* records,
                     std::size_t tiles, Frame frame, ElementType out_type, void* k_out,
                     void* v_out);

// The CPU backend with its own persistent pool of threads.count threads, or (count 0) on the
// process-wide ThreadPool::shared() (KVARN_CL_THREADS, else the machine's hardware threads;
// include/kvarn_cl/thread_pool.hpp), or on a pool the caller shares with its own work. Throws InvalidArgument for a count above ThreadPool::kMaxThreads or
// a malformed KVARN_CL_THREADS; a pool that could start fewer threads runs with those (name()
// says "N threads of M requested").
std::unique_ptr<Backend> make_cpu_backend(CpuThreads threads = {});
std::unique_ptr<Backend> make_cpu_backend(std::shared_ptr<ThreadPool> pool);
// OpenCL backend on the device chosen by KVARN_CL_PLATFORM / KVARN_CL_DEVICE or the default order
// (GPU, accelerator, CPU). Throws Unsupported if no OpenCL device is usable.
std::unique_ptr<Backend> make_opencl_backend();

// Explicit choice of an OpenCL device; an empty string means "use the environment / default
// order". Each is an index or a case-insensitive substring of the platform / device name.
struct DeviceSelector {
  std::string platform;
  std::string device;
};

// What make_backend() makes. The C API (kvarn_cl_backend_create), the CLI (--backend) and Python
// (kvarn_cl.Backend) all pass their arguments through this one rule.
struct BackendOptions {
  BackendKind kind = BackendKind::automatic;
  // The OpenCL device (kind opencl or automatic; InvalidArgument with kind cpu). Empty: the one
  // KVARN_CL_PLATFORM / KVARN_CL_DEVICE name, else the default order.
  DeviceSelector device;
  // Threads of the CPU backend whenever it is the one made (kind cpu, or automatic choosing or
  // falling back to the CPU); 0 = the process-wide pool. InvalidArgument with kind opencl.
  CpuThreads cpu_threads;
};

// kind automatic: an OpenCL GPU or accelerator whose kernels build (Backend::warm_up); the C++
// CPU backend when the only OpenCL devices are CPUs (it is faster there, docs/PERFORMANCE.md),
// when no device is usable or when the kernels do not build; a device named by the options or by
// KVARN_CL_PLATFORM / KVARN_CL_DEVICE is used even if it is a CPU (with the same fallback when its
// kernels do not build). `why` receives the reason for the choice (automatic only; cleared
// otherwise); `fell_back` is set when the CPU was taken because OpenCL was unusable (not chosen
// as the faster path).
std::unique_ptr<Backend> make_backend(const BackendOptions& options, std::string* why = nullptr,
                                      bool* fell_back = nullptr);
inline std::unique_ptr<Backend> make_backend(BackendKind kind, std::string* why = nullptr,
                                             bool* fell_back = nullptr) {
  BackendOptions options;
  options.kind = kind;
  return make_backend(options, why, fell_back);
}

}  // namespace kvarn_cl
