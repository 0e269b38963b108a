// Bad input to kvarn-cl: every case must give its documented non-zero exit code, exactly one line
// "kvarn-cl: error: ..." naming the argument and the value, and leave no output file behind (nor
// change an output file that existed before). Runs the real program, as a user would.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cli_runner.hpp"
#include "common/test_support.hpp"
#include "kvarn_cl/format.hpp"

using namespace kvarn_cl;
using kvarn_cl::test::CliResult;
using kvarn_cl::test::CliSandbox;

namespace {

// Exit codes documented in README.md and `kvarn-cl --help`.
constexpr int kUsage = 2, kInvalidInput = 3, kIo = 4;

constexpr int D = 128, G = 128;

struct BadCase {
  const char* name;
  std::vector<std::string> args;
  int exit_code;
  std::vector<std::string> mentions;  // substrings the error line must contain
};

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto k = test::to_half(test::gaussian_rows(2 * G, D, 1, {3, 70}));
    const auto v = test::to_half(test::gaussian_rows(2 * G, D, 2, {9}));
    box.write_halves("k.f16", k);
    box.write_halves("v.f16", v);
    box.write_halves("v_short.f16", std::vector<half_bits>(k.begin(), k.begin() + G * D));
    box.write_bytes("odd.f16", std::vector<std::uint8_t>(2 * D * G + 1, 0));
    box.write_halves("not_d.f16", std::vector<half_bits>(D * G + 3, 0x3C00));
    box.write_halves("not_tile.f16", std::vector<half_bits>(std::size_t(D) * (G + 5), 0x3C00));
    box.write_bytes("empty.f16", {});
    auto nan = k;
    nan[std::size_t(130) * D + 7] = 0x7E00;  // NaN at token 130, channel 7
    box.write_halves("nan.f16", nan);
    auto inf = v;
    inf[std::size_t(5) * D + 77] = 0xFC00;  // -Inf at token 5, channel 77
    box.write_halves("inf.f16", inf);
    auto huge = k;  // finite, but x·H overflows fp16 in row 0 (all channels at the maximum)
    for (int c = 0; c < D; ++c) huge[std::size_t(c)] = 0x7BFF;
    box.write_halves("huge.f16", huge);

    const CliResult q =
        box.run({"quantize", "--preset", "k4v2_g128", "--head-dim", "128", "--backend", "cpu",
                 "--k", "k.f16", "--v", "v.f16", "--out", "r.kvarn"});
    ASSERT_EQ(q.exit_code, 0) << q.err;
    const auto rec = box.read_bytes("r.kvarn");
    box.write_bytes("truncated.kvarn", std::vector<std::uint8_t>(rec.begin(), rec.end() - 100));
    auto corrupt = rec;
    CodecParams p;
    const RecordLayout l = RecordLayout::make(p);
    corrupt[l.bytes + l.s_col_k + 2 * 5] = 0x00;  // record 1, s_col_K[5] = NaN
    corrupt[l.bytes + l.s_col_k + 2 * 5 + 1] = 0x7E;
    box.write_bytes("corrupt.kvarn", corrupt);
    box.write_bytes("existing.out", {'k', 'e', 'e', 'p'});
  }

  void expect_clean_failure(const BadCase& c) {
    SCOPED_TRACE(c.name);
    const auto before = box.listing();
    const CliResult r = box.run(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.rfind("kvarn-cl: error: ", 0), 0u) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not exactly one line: " << r.err;
    for (const auto& m : c.mentions)
      EXPECT_NE(r.err.find(m), std::string::npos) << "error line lacks '" << m << "': " << r.err;
    EXPECT_EQ(box.listing(), before) << "files appeared or vanished";
    EXPECT_EQ(box.read_bytes("existing.out"), (std::vector<std::uint8_t>{'k', 'e', 'e', 'p'}));
  }

  static std::vector<std::string> quantize(std::vector<std::string> extra) {
    std::vector<std::string> a = {"quantize"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  CliSandbox box;
};

// A valid quantize command line with one option replaced.
std::vector<std::string> quantize_with(const std::string& option, const std::string& value,
                                       const std::string& out = "out.kvarn") {
  std::vector<std::pair<std::string, std::string>> opts = {
      {"--preset", "k4v2_g128"}, {"--head-dim", "128"}, {"--backend", "cpu"},
      {"--k", "k.f16"},          {"--v", "v.f16"},      {"--out", out}};
  std::vector<std::string> a = {"quantize"};
  for (auto& [o, v] : opts) {
    a.push_back(o);
    a.push_back(o == option ? value : v);
  }
  return a;
}

std::vector<std::string> dequantize_with(const std::string& option, const std::string& value) {
  std::vector<std::pair<std::string, std::string>> opts = {
      {"--preset", "k4v2_g128"}, {"--head-dim", "128"}, {"--backend", "cpu"},
      {"--in", "r.kvarn"},       {"--k-out", "k.out"},  {"--v-out", "v.out"}};
  std::vector<std::string> a = {"dequantize"};
  for (auto& [o, v] : opts) {
    a.push_back(o);
    a.push_back(o == option ? value : v);
  }
  return a;
}

}  // namespace

TEST_F(CliErrors, BadCommandLines) {
  const std::vector<BadCase> cases = {
      {"unknown subcommand", {"squash"}, kUsage, {"squash"}},
      {"unknown option", quantize({"--frobnicate", "1"}), kUsage, {"--frobnicate"}},
      {"missing required option",
       {"quantize", "--preset", "k4v2_g128", "--head-dim", "128", "--k", "k.f16", "--v", "v.f16"},
       kUsage,
       {"--out"}},
      {"option without value",
       {"quantize", "--preset", "k4v2_g128", "--head-dim", "128", "--k", "k.f16", "--v", "v.f16",
        "--out"},
       kUsage,
       {"--out"}},
      {"positional argument", quantize({"k.f16"}), kUsage, {"k.f16"}},
      {"unknown preset", quantize_with("--preset", "k3v3_g128"), kUsage, {"--preset", "k3v3_g128"}},
      {"head_dim not a power of two",
       quantize_with("--head-dim", "100"),
       kUsage,
       {"--head-dim", "100", "power of two"}},
      {"unsupported head_dim", quantize_with("--head-dim", "512"), kUsage, {"--head-dim", "512"}},
      {"head_dim not a number", quantize_with("--head-dim", "12x"), kUsage, {"--head-dim", "12x"}},
      {"unknown backend", quantize_with("--backend", "cuda"), kUsage, {"--backend", "cuda"}},
      {"sinkhorn iterations out of range",
       [] {
         auto a = quantize_with("", "");
         a.insert(a.end(), {"--sinkhorn-iters", "65"});
         return a;
       }(),
       kUsage,
       {"--sinkhorn-iters", "65"}},
      {"dequantize unknown preset",
       dequantize_with("--preset", "fp8"),
       kUsage,
       {"--preset", "fp8"}},
  };
  for (const auto& c : cases) expect_clean_failure(c);
}

TEST_F(CliErrors, BadQuantizeInputs) {
  const std::vector<BadCase> cases = {
      {"missing file", quantize_with("--k", "nope.f16"), kIo, {"--k", "nope.f16"}},
      {"directory as input", quantize_with("--v", "."), kIo, {"--v", "'.'"}},
      {"empty file", quantize_with("--k", "empty.f16"), kInvalidInput, {"--k", "empty.f16"}},
      {"odd byte count", quantize_with("--k", "odd.f16"), kInvalidInput, {"--k", "odd.f16"}},
      {"not a multiple of head_dim",
       quantize_with("--v", "not_d.f16"),
       kInvalidInput,
       {"--v", "not_d.f16", "--head-dim 128"}},
      {"not a multiple of the tile",
       quantize_with("--k", "not_tile.f16"),
       kInvalidInput,
       {"--k", "not_tile.f16", "133 tokens", "128"}},
      {"K and V lengths differ",
       quantize_with("--v", "v_short.f16"),
       kInvalidInput,
       {"--v", "v_short.f16", "128", "256"}},
      {"NaN in keys",
       quantize_with("--k", "nan.f16"),
       kInvalidInput,
       {"--k", "nan.f16", "token 130", "channel 7"}},
      {"Inf in values",
       quantize_with("--v", "inf.f16"),
       kInvalidInput,
       {"--v", "inf.f16", "token 5", "channel 77"}},
      {"rotation overflows fp16",
       quantize_with("--k", "huge.f16"),
       kInvalidInput,
       {"--k", "huge.f16", "token 0"}},
      {"output directory missing",
       quantize_with("--out", "no/such/dir/r.kvarn"),
       kIo,
       {"--out", "no/such/dir/r.kvarn"}},
      {"output is a directory", quantize_with("--out", "."), kIo, {"--out", "'.'"}},
      // A failing run must not replace or truncate a file already at the output path.
      {"existing output kept on failure",
       quantize_with("--k", "nan.f16", "existing.out"),
       kInvalidInput,
       {"nan.f16"}},
  };
  for (const auto& c : cases) expect_clean_failure(c);
}

TEST_F(CliErrors, BadDequantizeInputs) {
  const std::vector<BadCase> cases = {
      {"missing records", dequantize_with("--in", "gone.kvarn"), kIo, {"--in", "gone.kvarn"}},
      {"truncated records",
       dequantize_with("--in", "truncated.kvarn"),
       kInvalidInput,
       {"--in", "truncated.kvarn", "13824"}},
      {"records of another head_dim",
       dequantize_with("--head-dim", "64"),
       kInvalidInput,
       {"--in", "r.kvarn", "--head-dim 64"}},
      {"NaN scale in a record",
       dequantize_with("--in", "corrupt.kvarn"),
       kInvalidInput,
       {"--in", "corrupt.kvarn"}},
      {"second output unwritable",
       dequantize_with("--v-out", "missing_dir/v.out"),
       kIo,
       {"--v-out", "missing_dir/v.out"}},
  };
  for (const auto& c : cases) expect_clean_failure(c);
}

TEST_F(CliErrors, HelpForEverySubcommand) {
  for (const char* sub : {"quantize", "dequantize", "info", "demo"}) {
    const CliResult r = box.run({sub, "--help"});
    EXPECT_EQ(r.exit_code, 0) << sub << ": " << r.err;
    EXPECT_EQ(r.out.rfind(std::string("usage: kvarn-cl ") + sub, 0), 0u) << r.out;
  }
  const CliResult top = box.run({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_NE(top.out.find("exit codes"), std::string::npos) << top.out;
  const CliResult none = box.run({});
  EXPECT_EQ(none.exit_code, kUsage);
}
