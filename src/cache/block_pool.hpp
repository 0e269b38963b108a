// The free list of record blocks shared by every sequence of a KVCache (a block = one tile of all
// Hk heads in every layer's record pool). Lowest ids are handed out first so that a fresh cache
// fills its pools front to back, which keeps tests and reports reproducible.
#pragma once

#include <cstdint>
#include <vector>

namespace kvarn_cl::cache {

class BlockPool {
 public:
  explicit BlockPool(std::int32_t blocks);
  std::int32_t capacity() const noexcept { return capacity_; }
  std::size_t free_count() const noexcept { return free_.size(); }
  // Caller checks free_count() first; taking from an empty pool is a logic error (throws Internal).
  std::int32_t take();
  void give_back(std::int32_t block);
  std::size_t host_bytes() const noexcept { return free_.capacity() * sizeof(std::int32_t); }

 private:
  std::int32_t capacity_;
  std::vector<std::int32_t> free_;  // a stack; the back is handed out next
};

}  // namespace kvarn_cl::cache
