// Fuzzes the reader of program-cache entries (ProgramBinaryCache::decode_entry,
// src/opencl/program_binary_cache.cpp): the bytes of a file anyone who could write the cache folder
// might have left. Input: one byte n (key length, taken mod 64), n bytes of key, then the entry.
// Invariants: nothing but a result or nullopt comes out (no exception, no read outside the input),
// an accepted entry is exactly the encoding of its key and binary (the format has one spelling),
// and every entry the writer makes is read back.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "opencl/program_binary_cache.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using kvarn_cl::opencl::ProgramBinaryCache;
  if (size < 1) return 0;
  const std::size_t key_len = std::min<std::size_t>(data[0] % 64, size - 1);
  const std::string key(reinterpret_cast<const char*>(data + 1), key_len);
  const std::uint8_t* entry = data + 1 + key_len;
  const std::size_t entry_size = size - 1 - key_len;
  // A copy of exactly the entry's bytes, so that ASan sees any read past its end.
  const std::vector<unsigned char> bytes(entry, entry + entry_size);
  const auto binary = ProgramBinaryCache::decode_entry(bytes.data(), bytes.size(), key);
  if (binary && ProgramBinaryCache::encode_entry(key, *binary) != bytes) std::abort();
  if (!bytes.empty()) {
    const auto again = ProgramBinaryCache::encode_entry(key, bytes);
    const auto back = ProgramBinaryCache::decode_entry(again.data(), again.size(), key);
    if (!back || *back != bytes) std::abort();
  }
  return 0;
}
