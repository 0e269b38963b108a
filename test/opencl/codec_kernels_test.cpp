// Every codec kernel against the CPU codec (SPEC §5): rotation and dequantization bit for bit
// (same butterflies, same expressions, no fma contraction), quantization with codes equal except
// at rounding ties (at most 16 differing codes per 128 tiles) and fp16 scale vectors within
// rtol 1e-3; every preset, head_dim 64/128/256, odd tile counts, a large batch, repeat runs
// bit-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>

#include "common/test_support.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl_fixture.hpp"

namespace kvarn_cl::test {
namespace {

struct Geometry {
  Preset preset;
  int head_dim;
  std::size_t tiles;
};

std::string geometry_name(const ::testing::TestParamInfo<Geometry>& info) {
  return to_string(info.param.preset) + "_d" + std::to_string(info.param.head_dim) + "_t" +
         std::to_string(info.param.tiles);
}

// Every preset at D=128, the default preset and one G=64 preset at D=64 and D=256; odd tile
// counts throughout and one large batch (300+ tiles).
const Geometry kGeometries[] = {
    {Preset::k4v2_g128, 128, 301}, {Preset::k4v4_g128, 128, 7}, {Preset::k2v2_g128, 128, 5},
    {Preset::k4v2_g64, 128, 9},    {Preset::k4v4_g64, 128, 3},  {Preset::k4v2_g128, 64, 11},
    {Preset::k4v2_g128, 256, 5},   {Preset::k4v4_g64, 64, 13},
};

half_bits read_half(const std::uint8_t* p) {
  half_bits h;
  std::memcpy(&h, p, sizeof h);
  return h;
}

// Compares two record sets field by field. Returns the number of differing codes; fails the
// test on any scale vector outside rtol 1e-3.
std::size_t compare_records(const CodecParams& params, const std::vector<std::uint8_t>& got,
                            const std::vector<std::uint8_t>& want, std::size_t tiles) {
  const RecordLayout l = RecordLayout::make(params);
  const int G = l.group, D = l.head_dim;
  std::size_t differing = 0;
  std::vector<std::uint8_t> cg(std::size_t(std::max(G, D))), cw(cg.size());
  auto compare_vec = [&](std::size_t tile, std::size_t off, int n, const char* field) {
    for (int i = 0; i < n; ++i) {
      const float a = half_to_float(read_half(&got[tile * l.bytes + off + 2 * std::size_t(i)]));
      const float b = half_to_float(read_half(&want[tile * l.bytes + off + 2 * std::size_t(i)]));
      const float tol = 1e-3f * std::max(std::fabs(a), std::fabs(b)) + 1e-7f;
      if (!(std::fabs(a - b) <= tol)) {
        ADD_FAILURE() << field << "[" << i << "] of tile " << tile << ": opencl " << a << " cpu " << b;
        return;
      }
    }
  };
  for (std::size_t t = 0; t < tiles; ++t) {
    const std::uint8_t* rg = &got[t * l.bytes];
    const std::uint8_t* rw = &want[t * l.bytes];
    for (int d = 0; d < D; ++d) {
      detail::unpack_codes(rg + l.k_codes + std::size_t(d) * l.k_row_bytes, G, l.k_bits, cg.data());
      detail::unpack_codes(rw + l.k_codes + std::size_t(d) * l.k_row_bytes, G, l.k_bits, cw.data());
      for (int i = 0; i < G; ++i) differing += cg[std::size_t(i)] != cw[std::size_t(i)];
    }
    for (int r = 0; r < G; ++r) {
      detail::unpack_codes(rg + l.v_codes + std::size_t(r) * l.v_row_bytes, D, l.v_bits, cg.data());
      detail::unpack_codes(rw + l.v_codes + std::size_t(r) * l.v_row_bytes, D, l.v_bits, cw.data());
      for (int i = 0; i < D; ++i) differing += cg[std::size_t(i)] != cw[std::size_t(i)];
    }
    compare_vec(t, l.s_col_k, D, "s_col_K");
    compare_vec(t, l.zp_k, D, "zp_K");
    compare_vec(t, l.s_row_k, G, "s_row_K");
    compare_vec(t, l.s_col_v, D, "s_col_V");
    compare_vec(t, l.s_row_v, G, "s_row_V");
    compare_vec(t, l.zp_v, G, "zp_V");
  }
  return differing;
}

class CodecKernels : public ::testing::TestWithParam<Geometry> {};

TEST_P(CodecKernels, QuantizeMatchesCpuCodec) {
  const Geometry g = GetParam();
  const CodecParams params{g.preset, g.head_dim, kDefaultSinkhornIters};
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t G = std::size_t(l.group);
  const RotatedTiles tiles = make_rotated_tiles(params, g.tiles, 1234 + std::uint32_t(g.head_dim));

  std::vector<std::uint8_t> want(g.tiles * l.bytes);
  quantize_tiles(params, tiles.k.data(), tiles.v.data(), g.tiles, want.data());

  // Jobs in a scrambled order: tile i of the input goes to record perm[i] of the pool.
  std::vector<std::uint32_t> perm(g.tiles);
  std::iota(perm.begin(), perm.end(), 0u);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
  std::vector<QuantizeJob> jobs;
  for (std::size_t i = 0; i < g.tiles; ++i) jobs.push_back({std::uint32_t(i * G), perm[i]});

  auto k = to_device(tiles.k);
  auto v = to_device(tiles.v);
  auto records = cl_backend().allocate(g.tiles * l.bytes);
  cl_backend().quantize(params, *k, *v, jobs, *records);
  const auto pool = from_device<std::uint8_t>(*records, g.tiles * l.bytes);
  std::vector<std::uint8_t> got(pool.size());
  for (std::size_t i = 0; i < g.tiles; ++i)
    std::memcpy(&got[i * l.bytes], &pool[perm[i] * l.bytes], l.bytes);

  const std::size_t differing = compare_records(params, got, want, g.tiles);
  const std::size_t allowed = 16 * ((g.tiles + 127) / 128);
  EXPECT_LE(differing, allowed) << "codes differing from the CPU codec in " << g.tiles << " tiles";
  RecordProperty("differing_codes", int(differing));

  // The same call again gives the same bytes.
  cl_backend().quantize(params, *k, *v, jobs, *records);
  EXPECT_EQ(from_device<std::uint8_t>(*records, g.tiles * l.bytes), pool);
}

TEST_P(CodecKernels, DequantizeMatchesCpuInBothFrames) {
  const Geometry g = GetParam();
  const CodecParams params{g.preset, g.head_dim, kDefaultSinkhornIters};
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tile_values = std::size_t(l.group) * l.head_dim;
  const std::size_t n = std::min<std::size_t>(g.tiles, 40);
  const RotatedTiles tiles = make_rotated_tiles(params, n, 99);
  std::vector<std::uint8_t> records(n * l.bytes);
  quantize_tiles(params, tiles.k.data(), tiles.v.data(), n, records.data());
  auto pool = to_device(records);

  // Any list of ids: reversed, with a repeat.
  std::vector<std::uint32_t> ids(n);
  std::iota(ids.rbegin(), ids.rend(), 0u);
  ids.push_back(ids[n / 2]);
  std::vector<std::uint8_t> listed(ids.size() * l.bytes);
  for (std::size_t i = 0; i < ids.size(); ++i)
    std::memcpy(&listed[i * l.bytes], &records[ids[i] * l.bytes], l.bytes);

  auto k_out = cl_backend().allocate(ids.size() * tile_values * 2);
  auto v_out = cl_backend().allocate(ids.size() * tile_values * 2);
  for (Frame frame : {Frame::rotated, Frame::original}) {
    std::vector<half_bits> want_k(ids.size() * tile_values), want_v(want_k.size());
    dequantize_tiles(params, listed.data(), ids.size(), want_k.data(), want_v.data(), frame);
    cl_backend().dequantize(params, *pool, ids, frame, *k_out, *v_out);
    const auto got_k = from_device<half_bits>(*k_out, want_k.size());
    const auto got_v = from_device<half_bits>(*v_out, want_v.size());
    EXPECT_EQ(got_k, want_k) << (frame == Frame::rotated ? "rotated" : "original") << " frame, K";
    EXPECT_EQ(got_v, want_v) << (frame == Frame::rotated ? "rotated" : "original") << " frame, V";
    cl_backend().dequantize(params, *pool, ids, frame, *k_out, *v_out);
    EXPECT_EQ(from_device<half_bits>(*k_out, want_k.size()), got_k) << "repeat run differs";
  }
}

TEST_P(CodecKernels, RotateMatchesCpu) {
  const Geometry g = GetParam();
  const CodecParams params{g.preset, g.head_dim, kDefaultSinkhornIters};
  const int D = g.head_dim;
  const std::size_t rows = 37, out_row = 5;  // not a multiple of the rows per work-group
  const std::vector<float> x = gaussian_rows(rows, D, 5, {3}, 30.0f);
  const std::vector<half_bits> xh = to_half(x);
  std::vector<half_bits> want_f32(rows * D), want_f16(rows * D);
  rotate_rows(x.data(), want_f32.data(), rows, D);
  rotate_rows(xh.data(), want_f16.data(), rows, D);

  auto in32 = to_device(x);
  auto in16 = to_device(xh);
  const std::vector<half_bits> sentinel((rows + out_row + 2) * D, half_bits(0x7E00));
  auto out = to_device(sentinel);
  for (ElementType type : {ElementType::f32, ElementType::f16}) {
    cl_backend().rotate(params, type == ElementType::f32 ? *in32 : *in16, type, rows, *out, out_row);
    const auto got = from_device<half_bits>(*out, sentinel.size());
    const auto& want = type == ElementType::f32 ? want_f32 : want_f16;
    EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + std::ptrdiff_t(out_row * D)))
        << (type == ElementType::f32 ? "f32" : "f16") << " input";
    // Rows outside [out_row, out_row + rows) are untouched.
    EXPECT_TRUE(std::all_of(got.begin(), got.begin() + std::ptrdiff_t(out_row * D),
                            [](half_bits h) { return h == 0x7E00; }));
    EXPECT_TRUE(std::all_of(got.begin() + std::ptrdiff_t((out_row + rows) * D), got.end(),
                            [](half_bits h) { return h == 0x7E00; }));
  }
}

INSTANTIATE_TEST_SUITE_P(Geometries, CodecKernels, ::testing::ValuesIn(kGeometries), geometry_name);

}  // namespace
}  // namespace kvarn_cl::test
