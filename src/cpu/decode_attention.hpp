// Decode attention on the CPU (SPEC §4): one query token per sequence, straight from the records
// (fused) over the fp16 sink and tail, or over plain fp16 rows (the fp16 baseline and the
// materialize path). These are the host-pointer kernels behind the CPU backend's attend() and
// attend_fp16(): the backend checks the arguments (src/backend_api/checks.hpp), resolves its Buffers
// to host addresses and passes the pool sizes, against which these check every index they read.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend_api/checks.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/thread_pool.hpp"

namespace kvarn_cl::cpu {

// Host view of AttendArgs (see include/kvarn_cl/backend.hpp for the meaning of every field).
struct AttendRecordsHost {
  CodecParams params;
  int num_seqs = 0, num_q_heads = 0, num_kv_heads = 0;
  float scale = 0;
  const float* q = nullptr;
  void* out = nullptr;
  ElementType out_type = ElementType::f32;
  const std::uint8_t* records = nullptr;
  const std::int32_t* block_tables = nullptr;
  const half_bits* sink = nullptr;
  const half_bits* tail = nullptr;
  const half_bits* sink_v = nullptr;
  const half_bits* tail_v = nullptr;
  AttendPools pools;  // table width, fp16 capacities, and what the pools hold (check_attend)
  const SeqInfo* seq_info = nullptr;
};

// Host view of AttendFp16Args.
struct AttendFp16Host {
  int num_seqs = 0, num_q_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;
  const float* q = nullptr;
  void* out = nullptr;
  ElementType out_type = ElementType::f32;
  const half_bits* k = nullptr;
  const half_bits* v = nullptr;
  int capacity = 0;
  const std::int32_t* seq_lens = nullptr;
  Frame kv_frame = Frame::original;
};

// Which inner loops run: the SIMD paths of src/cpu/simd.hpp (the default), or the scalar
// reference they are tested against.
enum class Kernels { simd, reference };

// Both throw InvalidArgument for out-of-range indices (block ids, slots, lengths: the checks of
// src/backend_api/checks.hpp) and CorruptRecord for non-finite scale vectors. A sequence with no tokens gets a zero output.
// Work items are (sequence, KV head, context split), run on `pool`.
void attend_records(const AttendRecordsHost& args, ThreadPool& pool,
                    Kernels kernels = Kernels::simd);
void attend_fp16(const AttendFp16Host& args, ThreadPool& pool, Kernels kernels = Kernels::simd);

}  // namespace kvarn_cl::cpu
