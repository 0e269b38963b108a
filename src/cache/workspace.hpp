// A backend buffer that grows on demand and is kept between calls (staging rows of an append,
// queries and tables of an attend). Its size is part of KVCache::memory_report().
#pragma once

#include <algorithm>
#include <memory>

#include "kvarn_cl/backend.hpp"

namespace kvarn_cl::cache {

class Workspace {
 public:
  // A buffer of at least `bytes` bytes (1 at least: zero-sized device buffers are invalid).
  // Grows by half again as much as needed so that a slowly growing batch does not reallocate
  // every step. The previous content is not kept.
  Buffer& ensure(Backend& backend, std::size_t bytes) {
    bytes = std::max<std::size_t>(bytes, 1);
    if (!buffer_ || buffer_->size() < bytes) {
      const std::size_t grown =
          buffer_ ? std::max(bytes, buffer_->size() + buffer_->size() / 2) : bytes;
      buffer_.reset();  // release first: the old and the new buffer need not coexist
      buffer_ = backend.allocate(grown);
    }
    return *buffer_;
  }
  std::size_t bytes() const noexcept { return buffer_ ? buffer_->size() : 0; }

 private:
  std::unique_ptr<Buffer> buffer_;
};

}  // namespace kvarn_cl::cache
