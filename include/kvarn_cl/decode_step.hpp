// DecodeStep: one generated token of a batch of sequences, through every layer, the way an engine
// runs it (docs/API.md, "The decode step"). Planned once per step, then per layer only enqueued:
//
//   DecodeStep step = cache.begin_step(seq_ids);   // plan + one upload of the step's index data
//   for (int l = 0; l < num_layers; ++l) {
//     ... the engine computes q, k, v of layer l (its own kernels) ...
//     step.append(l, k, v, ElementType::f16, {{qkv_done}, nullptr});  // one launch, no wait
//     step.attend(l, num_q_heads, q, out, ElementType::f16, 0, {{}, &attn_done});
//     ... the engine's next kernels wait for attn_done ...
//   }
//   step.finish();  // the one synchronization point: device-side failures are reported here
//
// begin_step takes every listed sequence one token further in every layer: each sequence must
// hold the same number of tokens in every layer, all committed (roll back or commit speculative
// tokens first). Its tables (block tables, SeqInfo, the row each new token goes to, the tiles the
// token completes) are computed and uploaded once and shared by every layer. append(l) runs one
// kernel that rotates the step's K and V rows, checks them and stores them in the sink/tail pools
// (plus, on the steps where a sequence completes a tile, the quantize of that tile); attend(l)
// runs the fused attention over the layer, new token included. Neither reads anything back nor
// waits for the device; the host variants (rows and outputs in host memory) upload without
// waiting and the attend reads its output back, which waits.
//
// Failures found on the device (NaN, Inf or a value beyond the codec's bound in a new K or V row,
// a tile that cannot be quantized) are recorded in a device status word per layer and thrown by
// finish() as NonFiniteInput naming the layer, the sequence, the KV head and K or V. The step is
// then rolled back: every listed sequence returns to its state before begin_step in every layer
// (lengths, block tables, records of earlier tiles and fp16 rows bit for bit; blocks taken for the
// step go back to the pool). Outputs the step's attends wrote are unspecified for the sequences
// whose input failed. Nothing committed before the step is lost. Argument errors (sizes, a layer
// appended twice, an attend before its layer's append) throw at the call itself and leave the
// step open and unchanged.
//
// Events (the convention of CLBlast and clEnqueue*): `wait` lists OpenCL events the call's device
// work waits for (no host wait); `done`, when not null, receives a new event (release it with
// clReleaseEvent) that completes when the call's work has. On the CPU backend every call completes
// before it returns: it has no events (a non-empty wait list is Unsupported, *done is set to
// nullptr). To order with an engine's own queue, build the backend on it (make_opencl_backend with
// the engine's context, device and queue, device.hpp): calls on one in-order queue need no events.
//
// A step is open from begin_step until finish() returns or throws; while it is open, the cache
// refuses append, commit, rollback and free_sequence (InvalidArgument) and a second begin_step.
// Destroying a step that was not finished waits for its device work and rolls it back. A step must
// not outlive its cache.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl {

// Ordering of one enqueuing call with the caller's own device work.
struct StepEvents {
  std::vector<_cl_event*> wait;  // the call's work starts after these completed
  _cl_event** done = nullptr;    // receives a new event that completes with the call's work
};

class DecodeStep {
 public:
  DecodeStep(DecodeStep&& other) noexcept;
  DecodeStep& operator=(DecodeStep&& other) = delete;
  DecodeStep(const DecodeStep&) = delete;
  DecodeStep& operator=(const DecodeStep&) = delete;
  ~DecodeStep();  // an unfinished step is waited for and rolled back (errors are swallowed)

  // The step's sequences in batch order (the row order of every append and attend).
  const std::vector<SeqId>& sequences() const noexcept;

  // One new token of every sequence in `layer`: k and v hold [num_seqs][num_kv_heads][head_dim]
  // rows of `type` (f16 or f32), original frame. Each layer exactly once per step.
  void append(int layer, const Buffer& k, const Buffer& v, ElementType type,
              const StepEvents& events = {});
  void append(int layer, const void* k, const void* v, ElementType type);  // host rows

  // Decode attention of `layer` for every sequence (after its append in this step): q f32
  // [num_seqs][num_q_heads][head_dim], out [num_seqs][num_q_heads][head_dim] of out_type, both
  // original frame; scale 0 = 1/sqrt(head_dim).
  void attend(int layer, int num_q_heads, const Buffer& q, Buffer& out, ElementType out_type,
              float scale = 0.0f, const StepEvents& events = {});
  // Host q and out (f32 or f16): the output is read back, which waits for the step so far.
  void attend(int layer, int num_q_heads, const float* q, float* out, float scale = 0.0f);
  void attend(int layer, int num_q_heads, const float* q, half_bits* out, float scale = 0.0f);

  // The synchronization point: waits for the step's device work and reads its status words;
  // throws NonFiniteInput (the step rolled back, see above) or InvalidArgument when a layer was
  // not appended (the step rolled back too). The step is closed afterwards either way.
  void finish();

 private:
  friend class KVCache;
  DecodeStep(KVCache& cache, std::uint64_t id) noexcept : cache_(&cache), id_(id) {}
  void attend_host(int layer, int num_q_heads, const float* q, void* out, ElementType out_type,
                   float scale);
  KVCache* cache_;    // nullptr once moved from
  std::uint64_t id_;  // which step of the cache this handle is (a finished one is refused)
};

}  // namespace kvarn_cl
