// The OpenCL side of the robustness policy (docs/API.md): the kernels refuse what the CPU codec
// refuses (rotated input beyond the codec's bound, negative or non-finite record scales), decode
// records at the edge of the fp16 range to the same finite, saturated fp16 as the CPU, and the
// device row check used for device-resident cache input agrees with the host scan.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl/opencl_fixture.hpp"

using namespace kvarn_cl;
using namespace kvarn_cl::test;

namespace {

const CodecParams kParams{Preset::k4v2_g128, 128, kDefaultSinkhornIters};

void put_half(std::vector<std::uint8_t>& rec, std::size_t offset, half_bits h) {
  std::memcpy(rec.data() + offset, &h, 2);
}

// A record with every code at its maximum and every scale at ±65504: it decodes beyond the fp16
// range in fp32.
std::vector<std::uint8_t> extreme_record(const RecordLayout& l) {
  std::vector<std::uint8_t> rec(l.bytes, 0xFF);
  for (int d = 0; d < l.head_dim; ++d) {
    put_half(rec, l.s_col_k + 2 * std::size_t(d), 0x7BFF);
    put_half(rec, l.zp_k + 2 * std::size_t(d), 0x7BFF);
    put_half(rec, l.s_col_v + 2 * std::size_t(d), 0x7BFF);
  }
  for (int t = 0; t < l.group; ++t) {
    put_half(rec, l.s_row_k + 2 * std::size_t(t), 0x7BFF);
    put_half(rec, l.s_row_v + 2 * std::size_t(t), 0x7BFF);
    put_half(rec, l.zp_v + 2 * std::size_t(t), 0xFBFF);
  }
  return rec;
}

}  // namespace

TEST(Robustness, ExtremeRecordsDecodeFiniteAndLikeTheCpu) {
  auto& b = cl_backend();
  const RecordLayout l = RecordLayout::make(kParams);
  const auto rec = extreme_record(l);
  const std::size_t values = std::size_t(l.group) * l.head_dim;
  auto pool = to_device(rec);
  auto k = b.allocate(values * 2), v = b.allocate(values * 2);
  for (Frame f : {Frame::rotated, Frame::original}) {
    b.dequantize(kParams, *pool, {0}, f, *k, *v);
    const auto kd = from_device<half_bits>(*k, values), vd = from_device<half_bits>(*v, values);
    std::vector<half_bits> kc(values), vc(values);
    dequantize_tiles(kParams, rec.data(), 1, kc.data(), vc.data(), f);
    std::size_t inf = 0;
    for (std::size_t i = 0; i < values; ++i)
      inf += (kd[i] & 0x7C00u) == 0x7C00u || (vd[i] & 0x7C00u) == 0x7C00u;
    EXPECT_EQ(inf, 0u);
    if (f == Frame::rotated) {  // the original frame's FWHT may differ in the last bit (fp32 order)
      EXPECT_EQ(kd, kc);
      EXPECT_EQ(vd, vc);
    }
  }
}

TEST(Robustness, NegativeScalesAreCorruptOnTheDevice) {
  auto& b = cl_backend();
  const RecordLayout l = RecordLayout::make(kParams);
  const RotatedTiles tiles = make_rotated_tiles(kParams, 1, 41);
  std::vector<std::uint8_t> good(l.bytes);
  quantize_tile(kParams, tiles.k.data(), tiles.v.data(), good.data());
  // K and V rows into buffers of their own: one buffer for both would make the K and V
  // work-groups write the same rows (Oclgrind: write-write races).
  auto out_k = b.allocate(std::size_t(l.group) * l.head_dim * 2);
  auto out_v = b.allocate(std::size_t(l.group) * l.head_dim * 2);
  for (std::size_t field : {l.s_col_k, l.s_row_k, l.s_col_v, l.s_row_v}) {
    auto rec = good;
    put_half(rec, field + 2 * 9, float_to_half(-1.0f));
    auto pool = to_device(rec);
    EXPECT_THROW(b.dequantize(kParams, *pool, {0}, Frame::rotated, *out_k, *out_v), CorruptRecord);
  }
  auto rec = good;
  put_half(rec, l.zp_v + 2 * 9, float_to_half(-1.0f));  // zero points may be negative
  auto pool = to_device(rec);
  EXPECT_NO_THROW(b.dequantize(kParams, *pool, {0}, Frame::rotated, *out_k, *out_v));
}

TEST(Robustness, QuantizeRefusesInputBeyondTheCodecBound) {
  auto& b = cl_backend();
  const RecordLayout l = RecordLayout::make(kParams);
  RotatedTiles tiles = make_rotated_tiles(kParams, 1, 42);
  tiles.k[std::size_t(3) * l.head_dim + 4] = float_to_half(60000.0f);
  auto k = to_device(tiles.k), v = to_device(tiles.v);
  auto records = b.allocate(l.bytes);
  EXPECT_THROW(b.quantize(kParams, *k, *v, {{0, 0}}, *records), NonFiniteInput);
  tiles.k[std::size_t(3) * l.head_dim + 4] = float_to_half(kMaxRotatedMagnitude);
  auto k2 = to_device(tiles.k);
  EXPECT_NO_THROW(b.quantize(kParams, *k2, *v, {{0, 0}}, *records));
}

TEST(Robustness, DeviceRowCheckAgreesWithTheHostScan) {
  auto& b = cl_backend();
  const int D = 128;
  const std::size_t rows = 300;
  std::vector<half_bits> h(rows * D, float_to_half(1.0f));
  auto buf = to_device(h);
  EXPECT_EQ(b.first_row_out_of_range(*buf, rows, D, kMaxRotatedMagnitude), -1);
  for (const half_bits bad : {half_bits(0x7E00), half_bits(0xFC00), float_to_half(-50000.0f)}) {
    auto poisoned = h;
    poisoned[std::size_t(211) * D + 127] = bad;
    poisoned[std::size_t(250) * D + 0] = bad;
    auto pb = to_device(poisoned);
    EXPECT_EQ(b.first_row_out_of_range(*pb, rows, D, kMaxRotatedMagnitude), 211);
    EXPECT_EQ(b.Backend::first_row_out_of_range(*pb, rows, D, kMaxRotatedMagnitude), 211);
    EXPECT_EQ(b.first_row_out_of_range(*pb, 211, D, kMaxRotatedMagnitude), -1);  // only `rows`
  }
}
