#include "cache/block_pool.hpp"

#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cache {

BlockPool::BlockPool(std::int32_t blocks) : capacity_(blocks) {
  free_.reserve(std::size_t(blocks));
  for (std::int32_t b = blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::int32_t BlockPool::take() {
  if (free_.empty()) throw Error(Status::internal, "block pool: take() from an empty pool");
  const std::int32_t b = free_.back();
  free_.pop_back();
  return b;
}

void BlockPool::give_back(std::int32_t block) { free_.push_back(block); }

}  // namespace kvarn_cl::cache
