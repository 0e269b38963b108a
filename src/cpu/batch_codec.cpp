// Many tiles at once, spread over threads: the CPU backend's quantize and dequantize.
#include <vector>

#include "cpu/parallel_for.hpp"
#include "kvarn_cl/codec.hpp"

namespace kvarn_cl {

void quantize_tiles(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                    std::size_t tiles, std::uint8_t* records, CpuThreads threads) {
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tile_values = std::size_t(l.group) * l.head_dim;
  detail::parallel_for(tiles, threads.count, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i)
      quantize_tile(params, k_rot + i * tile_values, v_rot + i * tile_values,
                    records + i * l.bytes);
  });
}

void dequantize_tiles(const CodecParams& params, const std::uint8_t* records, std::size_t tiles,
                      half_bits* k_out, half_bits* v_out, Frame frame, CpuThreads threads) {
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tile_values = std::size_t(l.group) * l.head_dim;
  validate_records(params, records, tiles);  // names the failing record of the batch
  detail::parallel_for(tiles, threads.count, [&](std::size_t begin, std::size_t end) {
    std::vector<float> k(tile_values), v(tile_values);
    for (std::size_t i = begin; i < end; ++i) {
      dequantize_tile(params, records + i * l.bytes, k.data(), v.data(), frame);
      // A finite record can decode beyond the fp16 range (quantization error times the scales):
      // saturate, so decoded output is always finite.
      floats_to_halves_saturated(k.data(), k_out + i * tile_values, tile_values);
      floats_to_halves_saturated(v.data(), v_out + i * tile_values, tile_values);
    }
  });
}

}  // namespace kvarn_cl
