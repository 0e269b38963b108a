// Fuzzes the record decoder (validate_records + dequantize_tiles, CPU codec). Input: one byte
// selecting the preset and head dimension, then record bytes (padded with zeros to whole records).
// Invariants: only kvarn_cl::Error escapes, and a record that validates decodes to finite fp16.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvarn_cl;
  if (size < 1) return 0;
  static const int dims[] = {64, 128, 256};
  CodecParams p;
  p.preset = all_presets()[std::size_t(data[0] % all_presets().size())];
  p.head_dim = dims[(data[0] / 8) % 3];
  const RecordLayout l = RecordLayout::make(p);
  const std::size_t tiles = std::min<std::size_t>(2, (size - 1 + l.bytes - 1) / l.bytes);
  if (tiles == 0) return 0;
  std::vector<std::uint8_t> rec(tiles * l.bytes, 0);
  std::memcpy(rec.data(), data + 1, std::min(size - 1, rec.size()));
  const std::size_t values = tiles * std::size_t(l.group) * l.head_dim;
  std::vector<half_bits> k(values), v(values);
  bool valid = true;
  try {
    validate_records(p, rec.data(), tiles);
  } catch (const CorruptRecord&) {
    valid = false;
  }
  try {
    dequantize_tiles(p, rec.data(), tiles, k.data(), v.data(), (data[0] & 0x80) ? Frame::original : Frame::rotated,
                     CpuThreads{1});
  } catch (const CorruptRecord&) {
    if (valid) __builtin_trap();  // the decoder refused what validation accepted
    return 0;
  }
  if (!valid) __builtin_trap();  // decoded a record validation refused
  for (std::size_t i = 0; i < values; ++i)
    if ((k[i] & 0x7C00u) == 0x7C00u || (v[i] & 0x7C00u) == 0x7C00u) __builtin_trap();  // non-finite
  return 0;
}
