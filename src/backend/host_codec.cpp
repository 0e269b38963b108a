// rotate_host, quantize_host, dequantize_host (backend.hpp): the tile codec over host memory on
// any backend, one launch per step for the whole batch.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl {
namespace {

// count * per_item bytes, refused when the product overflows size_t.
std::size_t batch_bytes(const char* call, const char* what, std::size_t count,
                        std::size_t per_item) {
  if (per_item != 0 && count > SIZE_MAX / per_item)
    throw InvalidArgument(std::string(call) + ": " + what + " " + std::to_string(count) +
                          " is too many: " + std::to_string(per_item) +
                          " bytes each overflow size_t");
  return count * per_item;
}

// Rows and record ids are 32-bit in the backend's batched calls (QuantizeJob, record_ids).
void check_u32_count(const char* call, const char* what, std::size_t count, std::size_t limit) {
  if (count > limit)
    throw InvalidArgument(std::string(call) + ": " + what + " " + std::to_string(count) +
                          " is too many for one call (at most " + std::to_string(limit) + ")");
}

constexpr std::size_t kU32Max = std::numeric_limits<std::uint32_t>::max();

}  // namespace

void rotate_host(Backend& backend, const CodecParams& params, const void* in, ElementType in_type,
                 std::size_t rows, half_bits* out) {
  params.validate();
  if (rows == 0) return;
  const std::size_t D = std::size_t(params.head_dim);
  const std::size_t in_bytes = batch_bytes("rotate_host", "rows", rows, D * element_bytes(in_type));
  const std::size_t out_bytes = rows * D * 2;
  auto in_buf = backend.allocate(in_bytes);
  auto out_buf = backend.allocate(out_bytes);
  backend.write(*in_buf, 0, in, in_bytes);
  backend.rotate(params, *in_buf, in_type, rows, *out_buf, 0);
  backend.read(*out_buf, 0, out, out_bytes);
}

void quantize_host(Backend& backend, const CodecParams& params, const void* k, const void* v,
                   ElementType in_type, Frame in_frame, std::size_t tiles, std::uint8_t* records) {
  const char* call = "quantize_host";
  const RecordLayout L = RecordLayout::make(params);
  if (in_frame == Frame::rotated && in_type != ElementType::f16)
    throw InvalidArgument("quantize_host: rotated rows must be f16 (as rotate_host writes them)");
  if (tiles == 0) return;
  const std::size_t G = std::size_t(L.group), D = std::size_t(L.head_dim);
  check_u32_count(call, "tiles", tiles, kU32Max / G);  // the source row of the last tile
  const std::size_t rows = tiles * G;
  const std::size_t in_bytes = batch_bytes(call, "tiles", tiles, G * D * element_bytes(in_type));
  const std::size_t rot_bytes = batch_bytes(call, "tiles", tiles, G * D * 2);
  const std::size_t rec_bytes = batch_bytes(call, "tiles", tiles, L.bytes);
  auto k_rot = backend.allocate(rot_bytes), v_rot = backend.allocate(rot_bytes);
  if (in_frame == Frame::original) {
    auto staging = backend.allocate(in_bytes);
    backend.write(*staging, 0, k, in_bytes);
    backend.rotate(params, *staging, in_type, rows, *k_rot, 0);
    backend.write(*staging, 0, v, in_bytes);
    backend.rotate(params, *staging, in_type, rows, *v_rot, 0);
  } else {
    backend.write(*k_rot, 0, k, rot_bytes);
    backend.write(*v_rot, 0, v, rot_bytes);
  }
  std::vector<QuantizeJob> jobs(tiles);
  for (std::size_t i = 0; i < tiles; ++i) jobs[i] = {std::uint32_t(i * G), std::uint32_t(i)};
  auto rec = backend.allocate(rec_bytes);
  backend.quantize(params, *k_rot, *v_rot, jobs, *rec);
  backend.read(*rec, 0, records, rec_bytes);
}

void dequantize_host(Backend& backend, const CodecParams& params, const std::uint8_t* records,
                     std::size_t tiles, Frame frame, ElementType out_type, void* k_out,
                     void* v_out) {
  const char* call = "dequantize_host";
  const RecordLayout L = RecordLayout::make(params);
  if (tiles == 0) return;
  const std::size_t tile_values = std::size_t(L.group) * std::size_t(L.head_dim);
  check_u32_count(call, "tiles", tiles, kU32Max);  // record ids
  const std::size_t rec_bytes = batch_bytes(call, "tiles", tiles, L.bytes);
  const std::size_t half_bytes = batch_bytes(call, "tiles", tiles, tile_values * 2);
  batch_bytes(call, "tiles", tiles, tile_values * element_bytes(out_type));  // the caller's outputs
  const std::size_t values = tiles * tile_values;
  auto rec = backend.allocate(rec_bytes);
  auto k = backend.allocate(half_bytes), v = backend.allocate(half_bytes);
  backend.write(*rec, 0, records, rec_bytes);
  std::vector<std::uint32_t> ids(tiles);
  for (std::size_t i = 0; i < tiles; ++i) ids[i] = std::uint32_t(i);
  backend.dequantize(params, *rec, ids, frame, *k, *v);
  if (out_type == ElementType::f16) {
    backend.read(*k, 0, k_out, half_bytes);
    backend.read(*v, 0, v_out, half_bytes);
    return;
  }
  std::vector<half_bits> h(values);
  backend.read(*k, 0, h.data(), half_bytes);
  halves_to_floats(h.data(), static_cast<float*>(k_out), values);
  backend.read(*v, 0, h.data(), half_bytes);
  halves_to_floats(h.data(), static_cast<float*>(v_out), values);
}

}  // namespace kvarn_cl
