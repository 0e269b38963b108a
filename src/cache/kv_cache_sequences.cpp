// Sequences of a KVCache: ids handed out once and never reused (a stale id is an error), one slot
// of the fp16 pools each, blocks back to the pool when freed; the per-layer lengths; and the
// lookups every call shares (layer range, known ids, a batch without repeats, free blocks), so
// each of those rules is checked in one place.
#include <unordered_set>

#include "cache/error_message.hpp"
#include "cache/kv_cache_impl.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

void KVCache::Impl::check_layer(int layer, const char* fn) const {
  if (layer < 0 || layer >= cfg.num_layers)
    throw InvalidArgument(message(fn, ": layer ", layer, " is outside [0, ", cfg.num_layers, ')'));
}

KVCache::Impl::Sequence& KVCache::Impl::find(SeqId id, const char* fn) {
  auto it = seqs.find(id);
  if (it == seqs.end()) throw InvalidArgument(message(fn, ": unknown sequence id ", id));
  return it->second;
}

const KVCache::Impl::Sequence& KVCache::Impl::find(SeqId id, const char* fn) const {
  return const_cast<Impl*>(this)->find(id, fn);
}

void KVCache::Impl::check_not_empty(const std::vector<SeqId>& ids, const char* fn) {
  if (ids.empty()) throw InvalidArgument(message(fn, ": seq_ids is empty"));
}

std::vector<KVCache::Impl::Sequence*> KVCache::Impl::find_batch(const std::vector<SeqId>& ids,
                                                                const std::vector<int>& tokens,
                                                                const char* fn) {
  if (ids.size() != tokens.size())
    throw InvalidArgument(
        message(fn, ": seq_ids has ", ids.size(), " entries but tokens has ", tokens.size()));
  std::vector<Sequence*> batch;
  batch.reserve(ids.size());
  std::unordered_set<SeqId> seen;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    batch.push_back(&find(ids[i], fn));
    if (!seen.insert(ids[i]).second)
      throw InvalidArgument(
          message(fn, ": sequence id ", ids[i], " is listed twice (batch entry ", i, ')'));
  }
  return batch;
}

void KVCache::Impl::check_free_blocks(std::size_t needed, const char* fn) const {
  if (needed > pool.free_count())
    throw OutOfMemory(
        message(fn, ": the block pool is exhausted: this ", fn, " needs ", needed,
                " new blocks but ", pool.free_count(), " of ", pool.capacity(),
                " are free (CacheConfig::pool_blocks); free sequences or enlarge the pool"));
}

SeqId KVCache::add_sequence() {
  KVARN_CL_CACHE_CALL("add_sequence", true);
  Impl& m = *impl_;
  if (m.free_slots.empty())
    throw OutOfMemory(message("KVCache::add_sequence: all ", m.cfg.max_sequences,
                              " sequence slots (CacheConfig::max_sequences) are in use"));
  Impl::Sequence s;
  s.id = m.next_id++;
  s.slot = m.free_slots.back();
  s.length.assign(std::size_t(m.cfg.num_layers), 0);
  s.committed.assign(std::size_t(m.cfg.num_layers), 0);
  m.free_slots.pop_back();
  const SeqId id = s.id;
  m.seqs.emplace(id, std::move(s));
  return id;
}

void KVCache::free_sequence(SeqId id) {
  KVARN_CL_CACHE_CALL("free_sequence", true);
  Impl& m = *impl_;
  m.check_no_step("free_sequence");
  Impl::Sequence& s = m.find(id, "free_sequence");
  for (std::int32_t b : s.blocks) m.pool.give_back(b);
  m.free_slots.push_back(s.slot);
  m.seqs.erase(id);
}

bool KVCache::contains(SeqId id) const {
  KVARN_CL_CACHE_CALL("contains", false);
  return impl_->seqs.count(id) != 0;
}
std::size_t KVCache::num_sequences() const {
  KVARN_CL_CACHE_CALL("num_sequences", false);
  return impl_->seqs.size();
}

int KVCache::length(SeqId id, int layer) const {
  KVARN_CL_CACHE_CALL("length", false);
  impl_->check_layer(layer, "length");
  return impl_->find(id, "length").length[std::size_t(layer)];
}
int KVCache::committed(SeqId id, int layer) const {
  KVARN_CL_CACHE_CALL("committed", false);
  impl_->check_layer(layer, "committed");
  return impl_->find(id, "committed").committed[std::size_t(layer)];
}
int KVCache::quantized_tiles(SeqId id, int layer) const {
  KVARN_CL_CACHE_CALL("quantized_tiles", false);
  impl_->check_layer(layer, "quantized_tiles");
  return impl_->tiles_for(impl_->find(id, "quantized_tiles").committed[std::size_t(layer)]);
}

}  // namespace kvarn_cl
