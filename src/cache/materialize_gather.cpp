// The fp16 rows of sequences, gathered on the device into one [S][Hk][capacity][D] array per K
// and V (rotated frame): the quantized tiles of the batch dequantized in one call, sink and tail
// rows copied beside them. Used by the materialize path of attend and by KVCache::materialize.
#include <algorithm>

#include "cache/kv_cache_impl.hpp"

namespace kvarn_cl {

int KVCache::Impl::gather_fp16(int layer, const std::vector<const Sequence*>& batch,
                               std::vector<std::int32_t>& lens) {
  const std::size_t l = std::size_t(layer);
  int cap = 1;
  lens.clear();
  for (const Sequence* s : batch) {
    lens.push_back(s->length[l]);
    cap = std::max(cap, s->length[l]);
  }
  std::vector<std::uint32_t> ids;
  std::vector<RowRun> sink_runs, deq_runs, tail_runs;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Sequence& s = *batch[i];
    const int sl = sink_len(s, layer), nb = tiles_for(s.committed[l]), tl = tail_len(s, layer);
    for (int h = 0; h < Hk; ++h) {
      const std::size_t dst = (i * Hk + std::size_t(h)) * std::size_t(cap);
      if (sl > 0) sink_runs.push_back({sink_row(s.slot, h, 0), dst, std::uint64_t(sl)});
      if (nb > 0) deq_runs.push_back({ids.size() * G, dst + sl, std::uint64_t(nb) * G});
      for (int j = 0; j < nb; ++j) ids.push_back(std::uint32_t(s.blocks[std::size_t(j)] * Hk + h));
      if (tl > 0)
        tail_runs.push_back(
            {tail_row(s.slot, h, 0), dst + sl + std::size_t(nb) * G, std::uint64_t(tl)});
    }
  }
  const std::size_t mat_bytes = batch.size() * Hk * std::size_t(cap) * row_bytes();
  Buffer& mk = mat_k.ensure(*be, mat_bytes);
  Buffer& mv = mat_v.ensure(*be, mat_bytes);
  LayerPools& pools = layers[l];
  if (!ids.empty()) {
    Buffer& dk = deq_k.ensure(*be, ids.size() * G * row_bytes());
    Buffer& dv = deq_v.ensure(*be, ids.size() * G * row_bytes());
    be->dequantize(pools.codec, *pools.records, ids, Frame::rotated, dk, dv);
    be->copy_rows(dk, mk, deq_runs, row_bytes());
    be->copy_rows(dv, mv, deq_runs, row_bytes());
  }
  if (!sink_runs.empty()) {
    be->copy_rows(*pools.sink_k, mk, sink_runs, row_bytes());
    be->copy_rows(*pools.sink_v, mv, sink_runs, row_bytes());
  }
  if (!tail_runs.empty()) {
    be->copy_rows(*pools.tail_k, mk, tail_runs, row_bytes());
    be->copy_rows(*pools.tail_v, mv, tail_runs, row_bytes());
  }
  return cap;
}

MaterializedKV KVCache::materialize(SeqId id, int layer, Frame frame) {
  KVARN_CL_CACHE_CALL("materialize", true);
  Impl& m = *impl_;
  m.check_layer(layer, "materialize");
  const Impl::Sequence& s = m.find(id, "materialize");
  MaterializedKV r;
  r.tokens = s.length[std::size_t(layer)];
  if (r.tokens == 0) return r;
  std::vector<std::int32_t> lens;
  const int cap = m.gather_fp16(layer, {&s}, lens);
  const std::size_t rows = std::size_t(m.Hk) * cap;
  Buffer* k = &m.mat_k.ensure(*m.be, 0);
  Buffer* v = &m.mat_v.ensure(*m.be, 0);
  if (frame == Frame::original) {
    // H is its own inverse: rotating the rotated fp16 rows again gives the original frame.
    Buffer& ok = m.deq_k.ensure(*m.be, rows * m.row_bytes());
    Buffer& ov = m.deq_v.ensure(*m.be, rows * m.row_bytes());
    m.be->rotate(m.cfg.codec, *k, ElementType::f16, rows, ok,
                 0);  // the preset plays no part in a rotation
    m.be->rotate(m.cfg.codec, *v, ElementType::f16, rows, ov, 0);
    k = &ok;
    v = &ov;
  }
  r.k.resize(rows * m.D);
  r.v.resize(rows * m.D);
  m.be->read(*k, 0, r.k.data(), rows * m.row_bytes());
  m.be->read(*v, 0, r.v.data(), rows * m.row_bytes());
  return r;  // cap == tokens for a single sequence
}

}  // namespace kvarn_cl
