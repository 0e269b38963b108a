// KVCache::attend: one query token per sequence of a batch, one layer, one backend attention
// call for the whole batch. The arguments are checked here once; then either the fused path
// (the backend reads the records, sink and tail pools through block tables and SeqInfo) or the
// materialize path (the batch's rows gathered to fp16 by materialize_gather.cpp, then
// Backend::attend_fp16). Host queries and outputs travel through workspaces; device ones are
// used where they are.
#include <algorithm>
#include <cmath>

#include "cache/error_message.hpp"
#include "cache/input_checks.hpp"
#include "cache/kv_cache_impl.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

namespace {

// What the fused attention reads to find each sequence's tokens: block tables
// [seqs][width] and one SeqInfo per sequence.
struct FusedIndex {
  int width = 1;  // block-table entries per sequence (the longest quantized run; 1 at least)
  std::vector<std::int32_t> tables;
  std::vector<SeqInfo> info;
};

FusedIndex fused_index(const cache::Geometry& g, const std::vector<const cache::Sequence*>& batch,
                       int layer) {
  const std::size_t l = std::size_t(layer);
  FusedIndex x;
  for (const cache::Sequence* s : batch) x.width = std::max(x.width, g.tiles_for(s->committed[l]));
  x.tables.assign(batch.size() * std::size_t(x.width), 0);
  x.info.resize(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const cache::Sequence& s = *batch[i];
    const int nb = g.tiles_for(s.committed[l]);
    std::copy(s.blocks.begin(), s.blocks.begin() + nb,
              x.tables.begin() + std::ptrdiff_t(i * std::size_t(x.width)));
    x.info[i] = SeqInfo{s.slot, g.sink_len(s, layer), nb, g.tail_len(s, layer)};
  }
  return x;
}

}  // namespace

void KVCache::attend(int layer, const std::vector<SeqId>& ids, int hq, const float* q, float* out,
                     float scale, AttendPath path) {
  KVARN_CL_CACHE_CALL("attend", true);
  impl_->attend(layer, ids, hq, {q, nullptr}, out, nullptr, ElementType::f32, scale, path);
}
void KVCache::attend(int layer, const std::vector<SeqId>& ids, int hq, const float* q,
                     half_bits* out, float scale, AttendPath path) {
  KVARN_CL_CACHE_CALL("attend", true);
  impl_->attend(layer, ids, hq, {q, nullptr}, out, nullptr, ElementType::f16, scale, path);
}
void KVCache::attend(int layer, const std::vector<SeqId>& ids, int hq, const Buffer& q, Buffer& out,
                     ElementType out_type, float scale, AttendPath path) {
  KVARN_CL_CACHE_CALL("attend", true);
  impl_->attend(layer, ids, hq, {nullptr, &q}, nullptr, &out, out_type, scale, path);
}

void KVCache::Impl::attend(int layer, const std::vector<SeqId>& ids, int hq, Rows q_rows, void* out,
                           Buffer* out_device, ElementType out_type, float scale, AttendPath path) {
  const float* q = static_cast<const float*>(q_rows.host);
  const bool on_device = q_rows.device != nullptr;
  check_layer(layer, "attend");
  check_not_empty(ids, "attend");
  if (hq < 1 || hq % Hk != 0)
    throw InvalidArgument(
        message("attend: num_q_heads ", hq, " is not a positive multiple of num_kv_heads ", Hk));
  if (on_device ? out_device == nullptr : (q == nullptr || out == nullptr))
    throw InvalidArgument("attend: q or out is null");
  if (!std::isfinite(scale) || scale < 0)
    throw InvalidArgument(
        message("attend: scale ", scale, " must be finite and >= 0 (0 = 1/sqrt(head_dim))"));
  if (scale == 0) scale = 1.0f / std::sqrt(float(D));
  const std::size_t S = ids.size(), l = std::size_t(layer);
  if (!on_device) cache::check_host_queries(q, S, hq, D);

  std::vector<const Sequence*> batch;
  for (std::size_t i = 0; i < S; ++i) {
    const Sequence& s = find(ids[i], "attend");
    if (s.length[l] == 0)
      throw InvalidArgument(
          message("attend: sequence ", ids[i], " has no tokens in layer ", layer));
    batch.push_back(&s);
  }
  const std::size_t q_values = S * std::size_t(hq) * D;
  const std::size_t out_bytes = q_values * (out_type == ElementType::f32 ? 4 : 2);
  if (on_device) {
    cache::check_buffer_holds(*q_rows.device, q_values * 4, "attend", "q",
                              message(S, " x ", hq, " x ", D, " f32 values"));
    cache::check_buffer_holds(*out_device, out_bytes, "attend", "out", "the output");
  }
  const Buffer& qb = on_device ? *q_rows.device : q_ws.ensure(*be, q_values * 4);
  Buffer& ob = on_device ? *out_device : out_ws.ensure(*be, out_bytes);
  // Uploads do not wait for the queue (the previous layer's kernels may still run); the one
  // wait of a host-side call is the read of its output.
  if (!on_device) be->write_async(q_ws.ensure(*be, q_values * 4), 0, q, q_values * 4);

  if (path == AttendPath::materialize)
    attend_materialized(layer, batch, hq, scale, qb, ob, out_type);
  else
    attend_fused(layer, batch, hq, scale, qb, ob, out_type);
  if (!on_device) be->read(ob, 0, out, out_bytes);
}

void KVCache::Impl::attend_materialized(int layer, const std::vector<const Sequence*>& batch,
                                        int hq, float scale, const Buffer& q, Buffer& out,
                                        ElementType out_type) {
  std::vector<std::int32_t> lens;
  const int cap = gather_fp16(layer, batch, lens);
  Buffer& lb = lens_ws.ensure(*be, lens.size() * 4);
  be->write_async(lb, 0, lens.data(), lens.size() * 4);
  AttendFp16Args a =
      AttendFp16Args::over(int(batch.size()), hq, Hk, D, q, out, mat_k.ensure(*be, 0),
                           mat_v.ensure(*be, 0), cap, lb, Frame::rotated);
  a.scale = scale;
  a.out_type = out_type;
  a.host_seq_lens = lens.data();  // the backend sizes its launch from these: no read-back
  be->attend_fp16(a);
}

AttendArgs KVCache::Impl::layer_attend_args(int layer, int num_seqs, int hq, float scale,
                                            const Buffer& q, Buffer& out,
                                            ElementType out_type) const {
  const LayerPools& pools = layers[std::size_t(layer)];
  AttendArgs a;
  a.params = pools.codec;
  a.num_seqs = num_seqs;
  a.num_q_heads = hq;
  a.num_kv_heads = Hk;
  a.scale = scale;
  a.q = &q;
  a.out = &out;
  a.out_type = out_type;
  a.records = pools.records.get();
  a.sink = pools.sink_k.get();
  a.sink_v = pools.sink_v.get();
  a.tail = pools.tail_k.get();
  a.tail_v = pools.tail_v.get();
  a.sink_capacity = sink_cap;
  a.tail_capacity = tail_cap;
  return a;
}

void KVCache::Impl::attend_fused(int layer, const std::vector<const Sequence*>& batch, int hq,
                                 float scale, const Buffer& q, Buffer& out, ElementType out_type) {
  const FusedIndex index = fused_index(*this, batch, layer);
  Buffer& tb = tables_ws.ensure(*be, index.tables.size() * 4);
  Buffer& ib = info_ws.ensure(*be, index.info.size() * sizeof(SeqInfo));
  be->write_async(tb, 0, index.tables.data(), index.tables.size() * 4);
  be->write_async(ib, 0, index.info.data(), index.info.size() * sizeof(SeqInfo));
  AttendArgs a = layer_attend_args(layer, int(batch.size()), hq, scale, q, out, out_type);
  a.block_tables = &tb;
  a.max_blocks = index.width;
  a.seq_info = &ib;
  a.host_seq_info = index.info.data();  // the backend validates and sizes from these: no read-back
  a.host_block_tables = index.tables.data();
  be->attend(a);
}

}  // namespace kvarn_cl
