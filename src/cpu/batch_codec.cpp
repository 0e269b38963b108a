// Many tiles at once on the shared thread pool, through the SIMD codec.
#include "cpu/simd.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/thread_pool.hpp"

namespace kvarn_cl {

void quantize_tiles(const CodecParams& params, const half_bits* k_rot, const half_bits* v_rot,
                    std::size_t tiles, std::uint8_t* records, CpuThreads threads) {
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tile_values = std::size_t(l.group) * l.head_dim;
  ThreadPool::shared().parallel_for(
      tiles,
      [&](std::size_t i) {
        cpu::simd::quantize_tile(params, k_rot + i * tile_values, v_rot + i * tile_values,
                                 records + i * l.bytes);
      },
      threads.count);
}

void dequantize_tiles(const CodecParams& params, const std::uint8_t* records, std::size_t tiles,
                      half_bits* k_out, half_bits* v_out, Frame frame, CpuThreads threads) {
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tile_values = std::size_t(l.group) * l.head_dim;
  validate_records(params, records, tiles);  // names the failing record of the batch
  ThreadPool::shared().parallel_for(
      tiles,
      [&](std::size_t i) {
        cpu::simd::dequantize_tile(params, records + i * l.bytes, k_out + i * tile_values,
                                   v_out + i * tile_values, frame);
      },
      threads.count);
}

}  // namespace kvarn_cl
