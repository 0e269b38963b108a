// kvarn-cl quantize -> dequantize on data with outlier channels: the files are exactly what the
// library's codec produces for the same input, and the reconstruction error is bounded.
// (test/reference/check_cli.py checks the same program against an independent implementation.)
#include <gtest/gtest.h>

#include "cli_runner.hpp"
#include "common/test_support.hpp"
#include "kvarn_cl/codec.hpp"

using namespace kvarn_cl;
using kvarn_cl::test::CliResult;
using kvarn_cl::test::CliSandbox;

namespace {

struct RoundTrip {
  Preset preset;
  int head_dim;
};

std::vector<float> widen(const std::vector<half_bits>& h) { return test::to_float(h); }

void check_round_trip(const RoundTrip& c) {
  const CodecParams p{c.preset, c.head_dim, kDefaultSinkhornIters};
  const RecordLayout l = RecordLayout::make(p);
  const std::size_t tiles = 3, rows = tiles * std::size_t(p.group());
  const std::size_t n = rows * std::size_t(p.head_dim);
  const std::string preset = to_string(c.preset), dim = std::to_string(c.head_dim);
  SCOPED_TRACE(preset + " D=" + dim);

  const auto k = test::to_half(test::gaussian_rows(rows, p.head_dim, 11, {1, 40}, 20.0f));
  const auto v = test::to_half(test::gaussian_rows(rows, p.head_dim, 12, {p.head_dim - 3}, 20.0f));
  CliSandbox box;
  box.write_halves("k.f16", k);
  box.write_halves("v.f16", v);
  const CliResult q = box.run({"quantize", "--preset", preset, "--head-dim", dim, "--backend",
                               "cpu", "--k", "k.f16", "--v", "v.f16", "--out", "r.kvarn"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_TRUE(q.err.empty()) << q.err;
  const auto records = box.read_bytes("r.kvarn");
  ASSERT_EQ(records.size(), tiles * l.bytes);  // no header, no padding

  // The program writes what the library computes for the same rows.
  std::vector<half_bits> k_rot(n), v_rot(n);
  rotate_rows(k.data(), k_rot.data(), rows, p.head_dim);
  rotate_rows(v.data(), v_rot.data(), rows, p.head_dim);
  std::vector<std::uint8_t> expected(tiles * l.bytes);
  quantize_tiles(p, k_rot.data(), v_rot.data(), tiles, expected.data());
  EXPECT_EQ(records, expected);

  for (Frame frame : {Frame::original, Frame::rotated}) {
    std::vector<std::string> args = {"dequantize", "--preset", preset, "--head-dim", dim,
                                     "--backend",  "cpu",      "--in", "r.kvarn",    "--k-out",
                                     "k.out",      "--v-out",  "v.out"};
    if (frame == Frame::rotated) args.push_back("--rotated");
    const CliResult d = box.run(args);
    ASSERT_EQ(d.exit_code, 0) << d.err;
    std::vector<half_bits> k_lib(n), v_lib(n);
    dequantize_tiles(p, expected.data(), tiles, k_lib.data(), v_lib.data(), frame);
    const auto k_out = box.read_halves("k.out"), v_out = box.read_halves("v.out");
    EXPECT_EQ(k_out, k_lib);
    EXPECT_EQ(v_out, v_lib);

    // Error bound against the input (original frame) or the stored rows (rotated frame). The
    // bounds sit well above what the codec reaches on this data, far below a broken decode (~1).
    const double k_bound = p.k_bits() == 4 ? 0.12 : 0.45;
    const double v_bound = p.v_bits() == 4 ? 0.12 : 0.45;
    const auto& k_ref = frame == Frame::original ? k : k_rot;
    const auto& v_ref = frame == Frame::original ? v : v_rot;
    EXPECT_LT(relative_error(widen(k_out), widen(k_ref)), k_bound);
    EXPECT_LT(relative_error(widen(v_out), widen(v_ref)), v_bound);
  }
}

}  // namespace

TEST(CliRoundTrip, EveryPresetAtHeadDim128) {
  for (Preset preset : all_presets()) check_round_trip({preset, 128});
}

TEST(CliRoundTrip, HeadDims64And256) {
  check_round_trip({Preset::k4v2_g128, 64});
  check_round_trip({Preset::k4v4_g64, 256});
}

TEST(CliInfo, ListsEveryPresetWithRecordBytes) {
  CliSandbox box;
  const CliResult r = box.run({"info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (Preset p : all_presets()) {
    EXPECT_NE(r.out.find(to_string(p)), std::string::npos) << r.out;
    for (int d : {64, 128, 256}) {
      const RecordLayout l = RecordLayout::make({p, d, kDefaultSinkhornIters});
      EXPECT_NE(r.out.find(std::to_string(l.bytes) + " B"), std::string::npos)
          << to_string(p) << " D=" << d << "\n"
          << r.out;
    }
  }
  EXPECT_NE(r.out.find("backend auto uses: "), std::string::npos) << r.out;
}
