// The shape every layer's pools share, and the arithmetic of where a sequence's tokens are. A
// sequence's tokens, in order: the sink (its first sink_cap tokens, fp16), the quantized tiles (G
// tokens each, in block-table order), the tail (fp16, the rest). Tiles are quantized only once
// committed and older than the newest `recent` committed tokens; the tail holds everything after
// them. Plain arithmetic on host state: the append plan, commit, attend and the inspection calls
// all read positions from here, so the split of a sequence is written once.
#pragma once

#include <algorithm>
#include <cstddef>

#include "cache/sequence.hpp"

namespace kvarn_cl::cache {

struct Geometry {
  int G = 0;         // tokens per tile (the preset's group, shared by every layer)
  int D = 0;         // head dimension
  int Hk = 0;        // KV heads
  int sink_cap = 0;  // sink rows per (slot, head)
  int tail_cap = 0;  // tail rows per (slot, head)
  int recent = 0;    // newest committed tokens kept fp16 (CacheConfig::recent_tokens)

  std::size_t row_bytes() const { return std::size_t(D) * 2; }  // one fp16 row
  // Row of token `pos` of KV head h of the sequence in `slot`, in the sink / tail pools.
  std::size_t sink_row(int slot, int h, int pos) const {
    return (std::size_t(slot) * Hk + std::size_t(h)) * std::size_t(sink_cap) + std::size_t(pos);
  }
  std::size_t tail_row(int slot, int h, int pos) const {
    return (std::size_t(slot) * Hk + std::size_t(h)) * std::size_t(tail_cap) + std::size_t(pos);
  }
  // Tiles that are complete, committed and older than the recent window, hence quantized, for
  // `committed_tokens` tokens (window: the newest `window` committed tokens stay fp16).
  int tiles_for(int committed_tokens, int window) const {
    return committed_tokens > sink_cap + window ? (committed_tokens - sink_cap - window) / G : 0;
  }
  int tiles_for(int committed_tokens) const { return tiles_for(committed_tokens, recent); }
  int sink_len(const Sequence& s, int layer) const {
    return std::min(s.length[std::size_t(layer)], sink_cap);
  }
  int tail_len(const Sequence& s, int layer) const {
    const int len = s.length[std::size_t(layer)];
    return len > sink_cap ? len - sink_cap - tiles_for(s.committed[std::size_t(layer)]) * G : 0;
  }
};

}  // namespace kvarn_cl::cache
