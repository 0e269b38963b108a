// rotate_host, quantize_host, dequantize_host (backend.hpp): the tile codec over host memory on
// any backend, one launch per step for the whole batch. The caller's arrays are used in place
// where the backend's buffers are host memory (Backend::view_host), else copied once each way.
#include <cstdint>
#include <limits>
#include <memory>
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

// The caller's input as a buffer of `backend`: a view, or a copy on a device.
std::unique_ptr<Buffer> stage_in(Backend& backend, const void* data, std::size_t bytes) {
  if (auto view = backend.view_host(const_cast<void*>(data), bytes)) return view;  // read only
  auto buffer = backend.allocate(bytes);
  backend.write(*buffer, 0, data, bytes);
  return buffer;
}

// A destination in the caller's memory: a view, or a device buffer that finish() reads back.
class StagedOut {
 public:
  StagedOut(Backend& backend, void* data, std::size_t bytes)
      : backend_(backend), data_(data), bytes_(bytes), buffer_(backend.view_host(data, bytes)) {
    if (!buffer_) {
      buffer_ = backend.allocate(bytes);
      read_back_ = true;
    }
  }
  Buffer& buffer() { return *buffer_; }
  void finish() {
    if (read_back_)
      backend_.read(*buffer_, 0, data_, bytes_);
    else
      backend_.finish();
  }

 private:
  Backend& backend_;
  void* data_;
  std::size_t bytes_;
  std::unique_ptr<Buffer> buffer_;
  bool read_back_ = false;
};

}  // namespace

void rotate_host(Backend& backend, const CodecParams& params, const void* in, ElementType in_type,
                 std::size_t rows, half_bits* out) {
  params.validate();
  if (rows == 0) return;
  const std::size_t D = std::size_t(params.head_dim);
  const std::size_t in_bytes = batch_bytes("rotate_host", "rows", rows, D * element_bytes(in_type));
  const std::size_t out_bytes = rows * D * 2;
  auto in_buf = stage_in(backend, in, in_bytes);
  StagedOut out_buf(backend, out, out_bytes);
  backend.rotate(params, *in_buf, in_type, rows, out_buf.buffer(), 0);
  out_buf.finish();
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
  std::unique_ptr<Buffer> k_rot, v_rot;
  if (in_frame == Frame::original) {
    k_rot = backend.allocate(rot_bytes);
    v_rot = backend.allocate(rot_bytes);
    const auto k_in = stage_in(backend, k, in_bytes), v_in = stage_in(backend, v, in_bytes);
    backend.rotate(params, *k_in, in_type, rows, *k_rot, 0);
    backend.rotate(params, *v_in, in_type, rows, *v_rot, 0);
  } else {
    k_rot = stage_in(backend, k, rot_bytes);
    v_rot = stage_in(backend, v, rot_bytes);
  }
  std::vector<QuantizeJob> jobs(tiles);
  for (std::size_t i = 0; i < tiles; ++i) jobs[i] = {std::uint32_t(i * G), std::uint32_t(i)};
  StagedOut rec(backend, records, rec_bytes);
  backend.quantize(params, *k_rot, *v_rot, jobs, rec.buffer());
  rec.finish();
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
  auto rec = stage_in(backend, records, rec_bytes);
  std::vector<std::uint32_t> ids(tiles);
  for (std::size_t i = 0; i < tiles; ++i) ids[i] = std::uint32_t(i);
  if (out_type == ElementType::f16) {  // straight into the caller's arrays
    StagedOut k(backend, k_out, half_bytes), v(backend, v_out, half_bytes);
    backend.dequantize(params, *rec, ids, frame, k.buffer(), v.buffer());
    k.finish();
    v.finish();
    return;
  }
  auto k = backend.allocate(half_bytes), v = backend.allocate(half_bytes);
  backend.dequantize(params, *rec, ids, frame, *k, *v);
  std::vector<half_bits> h(values);
  backend.read(*k, 0, h.data(), half_bytes);
  halves_to_floats(h.data(), static_cast<float*>(k_out), values);
  backend.read(*v, 0, h.data(), half_bytes);
  halves_to_floats(h.data(), static_cast<float*>(v_out), values);
}

}  // namespace kvarn_cl
