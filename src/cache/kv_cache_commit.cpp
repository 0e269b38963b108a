// Commit and rollback of speculative tokens. Commit quantizes, per layer, the tiles that became
// complete, in place in the tail pool (one quantize per layer for the whole batch), then moves
// the remaining tail rows to the front. Rollback only shortens the sink/tail: uncommitted tokens
// were never quantized.
#include <algorithm>

#include "cache/error_message.hpp"
#include "cache/kv_cache_impl.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

void KVCache::commit(const std::vector<SeqId>& ids, const std::vector<int>& tokens) {
  KVARN_CL_CACHE_CALL("commit", true);
  impl_->commit(ids, tokens);
}
void KVCache::commit(SeqId id, int tokens) {
  KVARN_CL_CACHE_CALL("commit", true);
  impl_->commit({id}, {tokens});
}

void KVCache::rollback(SeqId id) {
  KVARN_CL_CACHE_CALL("rollback", true);
  impl_->check_no_step("rollback");
  Impl::Sequence& s = impl_->find(id, "rollback");
  s.length = s.committed;
}

void KVCache::Impl::commit(const std::vector<SeqId>& ids, const std::vector<int>& tokens) {
  check_no_step("commit");
  const std::vector<Sequence*> batch = find_batch(ids, tokens, "commit");
  const std::size_t NL = std::size_t(cfg.num_layers);
  std::vector<std::vector<int>> target(batch.size(),
                                       std::vector<int>(NL));  // committed tokens after
  std::vector<std::size_t> tiles_after(batch.size());  // block-table length after, over all layers
  std::size_t blocks_needed = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Sequence& s = *batch[i];
    if (tokens[i] < -1)
      throw InvalidArgument(
          message("commit: tokens[", i, "] = ", tokens[i], ": must be >= 0, or -1 for all"));
    std::size_t max_tiles = s.blocks.size();
    for (std::size_t l = 0; l < NL; ++l) {
      const int u = s.length[l] - s.committed[l];
      const int n = tokens[i] == -1 ? u : tokens[i];
      if (n > u)
        throw InvalidArgument(message("commit: tokens[", i, "] = ", n, " but sequence ", ids[i],
                                      " has only ", u, " uncommitted tokens in layer ", l));
      target[i][l] = s.committed[l] + n;
      max_tiles = std::max(max_tiles, std::size_t(tiles_for(target[i][l])));
    }
    tiles_after[i] = max_tiles;
    blocks_needed += max_tiles - s.blocks.size();
  }
  check_free_blocks(blocks_needed, "commit");
  std::vector<std::size_t> old_size(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Sequence& s = *batch[i];
    old_size[i] = s.blocks.size();
    while (s.blocks.size() < tiles_after[i]) s.blocks.push_back(pool.take());
  }
  try {
    for (std::size_t l = 0; l < NL; ++l)
      if (quantize_committed_tiles(l, batch, target))
        for (std::size_t i = 0; i < batch.size(); ++i) batch[i]->committed[l] = target[i][l];
  } catch (...) {
    // Layers already done keep their new state (their tail rows moved); blocks no layer uses go back.
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Sequence& s = *batch[i];
      int used = int(old_size[i]);
      for (std::size_t l = 0; l < NL; ++l) used = std::max(used, tiles_for(s.committed[l]));
      while (int(s.blocks.size()) > used) {
        pool.give_back(s.blocks.back());
        s.blocks.pop_back();
      }
    }
    throw;
  }
  for (std::size_t i = 0; i < batch.size(); ++i)
    for (std::size_t l = 0; l < NL; ++l) batch[i]->committed[l] = target[i][l];
}

bool KVCache::Impl::quantize_committed_tiles(std::size_t l, const std::vector<Sequence*>& batch,
                                             const std::vector<std::vector<int>>& target) {
  // Without a recent window the shift runs never overlap (the remainder holds fewer than
  // max_uncommitted <= G rows and starts at least G rows in); with one, an overlapping remainder
  // moves through a workspace.
  std::vector<QuantizeJob> jobs;
  std::vector<RowRun> shift;
  bool overlap = false;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Sequence& s = *batch[i];
    const int q0 = tiles_for(s.committed[l]), q1 = tiles_for(target[i][l]);
    if (q1 == q0) continue;
    const int tl = tail_len(s, int(l));
    for (int h = 0; h < Hk; ++h) {
      for (int j = q0; j < q1; ++j)
        jobs.push_back({std::uint32_t(tail_row(s.slot, h, (j - q0) * G)),
                        std::uint32_t(s.blocks[std::size_t(j)] * Hk + h)});
      const int rest = tl - (q1 - q0) * G;
      if (rest > 0)
        shift.push_back(
            {tail_row(s.slot, h, (q1 - q0) * G), tail_row(s.slot, h, 0), std::uint64_t(rest)});
      overlap = overlap || rest > (q1 - q0) * G;
    }
  }
  if (jobs.empty()) return false;
  LayerPools& pools = layers[l];
  be->quantize(pools.codec, *pools.tail_k, *pools.tail_v, jobs, *pools.records);
  if (!shift.empty() && !overlap) {
    be->copy_rows(*pools.tail_k, *pools.tail_k, shift, row_bytes());
    be->copy_rows(*pools.tail_v, *pools.tail_v, shift, row_bytes());
  } else if (!shift.empty()) {
    std::vector<RowRun> out, back;
    std::uint64_t at = 0;
    for (const RowRun& r : shift) {
      out.push_back({r.src_row, at, r.rows});
      back.push_back({at, r.dst_row, r.rows});
      at += r.rows;
    }
    Buffer& ws = shift_ws.ensure(*be, std::size_t(at) * row_bytes());
    for (Buffer* t : {pools.tail_k.get(), pools.tail_v.get()}) {
      be->copy_rows(*t, ws, out, row_bytes());
      be->copy_rows(ws, *t, back, row_bytes());
    }
  }
  return true;
}

}  // namespace kvarn_cl
