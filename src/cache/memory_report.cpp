// KVCache::memory_report: every byte the cache holds, by kind (include/kvarn_cl/cache.hpp's
// MemoryReport), plus the use of those bytes for context. Host bookkeeping is counted by
// capacity, so the report matches what the process really holds.
#include "cache/kv_cache_impl.hpp"

namespace kvarn_cl {

MemoryReport KVCache::memory_report() const {
  KVARN_CL_CACHE_CALL("memory_report", false);
  const Impl& m = *impl_;
  MemoryReport r;
  for (const Impl::LayerPools& p : m.layers) {
    r.records += p.records->size();
    r.sink += p.sink_k->size() + p.sink_v->size();
    r.tail += p.tail_k->size() + p.tail_v->size();
  }
  r.block_tables = m.pool.host_bytes() + m.tables_ws.bytes() + m.step_tables_ws.bytes();
  r.seq_info = m.info_ws.bytes() + m.step_info_ws.bytes() + m.free_slots.capacity() * sizeof(int) +
               m.seqs.bucket_count() * sizeof(void*);
  for (const auto& kv : m.seqs) {
    const Impl::Sequence& s = kv.second;
    r.block_tables += s.blocks.capacity() * sizeof(std::int32_t);
    // the map node: key, state and the per-layer vectors
    r.seq_info += sizeof(SeqId) + sizeof(Impl::Sequence) + sizeof(void*) +
                  (s.length.capacity() + s.committed.capacity()) * sizeof(int);
    for (int l = 0; l < m.cfg.num_layers; ++l) {
      const int c = s.committed[std::size_t(l)];
      r.live_tokens += std::size_t(s.length[std::size_t(l)]);
      r.records_in_use +=
          std::size_t(m.tiles_for(c)) * m.Hk * m.layers[std::size_t(l)].layout.bytes;
      r.exact_recent_tokens += std::size_t(m.tiles_for(c, 0) - m.tiles_for(c)) * std::size_t(m.G);
    }
  }
  for (const cache::Workspace* w :
       {&m.in_k, &m.in_v, &m.rot_k, &m.rot_v, &m.q_ws, &m.out_ws, &m.deq_k, &m.deq_v, &m.mat_k,
        &m.mat_v, &m.lens_ws, &m.shift_ws, &m.step_dest_ws, &m.step_jobs_ws, &m.step_status_ws,
        &m.step_undo_ws})
    r.workspaces += w->bytes();
  r.fp16_equivalent = r.live_tokens * m.Hk * m.row_bytes() * 2;
  r.free_blocks = m.pool.free_count();
  return r;
}

}  // namespace kvarn_cl
