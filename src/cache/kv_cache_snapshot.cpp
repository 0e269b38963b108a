// KVCache::snapshot: the raw content of one sequence in one layer, read back from the pools
// as stored (records in block-table order, rotated fp16 sink and tail rows) for tests and
// debugging.
#include "cache/kv_cache_impl.hpp"

namespace kvarn_cl {

SequenceSnapshot KVCache::snapshot(SeqId id, int layer) {
  KVARN_CL_CACHE_CALL("snapshot", false);
  Impl& m = *impl_;
  m.check_layer(layer, "snapshot");
  const Impl::Sequence& s = m.find(id, "snapshot");
  const Impl::LayerPools& p = m.layers[std::size_t(layer)];
  SequenceSnapshot r;
  r.sink_len = m.sink_len(s, layer);
  r.num_tiles = m.tiles_for(s.committed[std::size_t(layer)]);
  r.tail_len = m.tail_len(s, layer);
  const std::size_t rb = p.layout.bytes * m.Hk, row = m.row_bytes();
  r.records.resize(std::size_t(r.num_tiles) * rb);
  for (int j = 0; j < r.num_tiles; ++j)
    m.be->read(*p.records, std::size_t(s.blocks[std::size_t(j)]) * rb, r.records.data() + j * rb,
               rb);
  r.sink_k.resize(std::size_t(m.Hk) * r.sink_len * m.D);
  r.sink_v.resize(r.sink_k.size());
  r.tail_k.resize(std::size_t(m.Hk) * r.tail_len * m.D);
  r.tail_v.resize(r.tail_k.size());
  for (int h = 0; h < m.Hk; ++h) {
    const std::size_t so = std::size_t(h) * r.sink_len * m.D,
                      to = std::size_t(h) * r.tail_len * m.D;
    m.be->read(*p.sink_k, m.sink_row(s.slot, h, 0) * row, r.sink_k.data() + so, r.sink_len * row);
    m.be->read(*p.sink_v, m.sink_row(s.slot, h, 0) * row, r.sink_v.data() + so, r.sink_len * row);
    m.be->read(*p.tail_k, m.tail_row(s.slot, h, 0) * row, r.tail_k.data() + to, r.tail_len * row);
    m.be->read(*p.tail_v, m.tail_row(s.slot, h, 0) * row, r.tail_v.data() + to, r.tail_len * row);
  }
  return r;
}

}  // namespace kvarn_cl
