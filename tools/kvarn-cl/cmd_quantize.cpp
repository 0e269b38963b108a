// kvarn-cl quantize: one KV head's fp16 keys and values (token-major, original frame) -> KVarN
// records back to back (SPEC §2.5, no header, no padding). Rotation, a check of the rotated rows,
// then tile quantization, on the chosen backend (rotate_host, quantize_host of backend.hpp).
#include <cstdio>
#include <numeric>

#include "cli.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s{
      "quantize",
      "Quantize the keys and values of one KV head into KVarN records (one per tile of G tokens).",
      {preset_option(true),
       head_dim_option(true),
       iters_option(),
       backend_option(),
       {"k", "K.f16", "keys: raw little-endian fp16, [T][D] token-major, original frame", true},
       {"v", "V.f16", "values: same shape as --k", true},
       {"out", "R.kvarn", "output: T/G records back to back, each exactly the record size", true}},
      "T must be a multiple of the preset's tile size G (128 or 64). The output file appears only\n"
      "when complete. Record layout: docs/FORMAT.md.\n" +
          output_policy_help()};
  return s;
}

// Rotation can overflow fp16 for huge inputs (|x·H| may reach sqrt(D)·max|x|): name the file.
void check_rotated(const std::vector<half_bits>& rot, std::size_t rows, int d,
                   const std::string& option, const std::string& path) {
  try {
    check_finite(rot.data(), rows, d, "--" + option + " '" + path + "'");
  } catch (const NonFiniteInput& e) {
    throw NonFiniteInput(std::string(e.what()) + " after the Hadamard rotation (fp16 overflow)");
  }
}

}  // namespace

int run_quantize(int argc, char** argv) {
  const Options opts(spec(), argc, argv);
  if (opts.help()) {
    std::fputs(help_text(spec()).c_str(), stdout);
    return kExitOk;
  }
  const CodecParams params = opts.codec_params();
  const BackendKind kind = opts.backend_kind();
  const RecordLayout layout = RecordLayout::make(params);
  const int d = params.head_dim;
  const std::size_t g = std::size_t(params.group());
  const std::string tile_what = "the tile size of preset " + to_string(params.preset) + ", G =";

  check_distinct_files({{"k", opts.get("k")}, {"v", opts.get("v")}}, {{"out", opts.get("out")}});
  const std::string dim_what = "--head-dim " + std::to_string(d);
  std::size_t k_rows = 0, v_rows = 0;
  const auto k = read_f16_rows(opts.get("k"), "k", d, dim_what, g, tile_what, &k_rows);
  const auto v = read_f16_rows(opts.get("v"), "v", d, dim_what, g, tile_what, &v_rows);
  if (k_rows != v_rows)
    throw InvalidArgument("--k '" + opts.get("k") + "' has " + std::to_string(k_rows) +
                          " tokens but --v '" + opts.get("v") + "' has " + std::to_string(v_rows));
  const std::size_t rows = k_rows, tiles = rows / g, values = rows * std::size_t(d);
  AtomicOutput out(opts.get("out"), "out");  // fails early if the output cannot be created

  auto backend = open_backend(kind);
  std::vector<half_bits> k_rot(values), v_rot(values);
  rotate_host(*backend, params, k.data(), ElementType::f16, rows, k_rot.data());
  rotate_host(*backend, params, v.data(), ElementType::f16, rows, v_rot.data());
  check_rotated(k_rot, rows, d, "k", opts.get("k"));
  check_rotated(v_rot, rows, d, "v", opts.get("v"));
  std::vector<std::uint8_t> records(tiles * layout.bytes);
  quantize_host(*backend, params, k_rot.data(), v_rot.data(), ElementType::f16, Frame::rotated,
                tiles, records.data());

  out.write(records.data(), records.size());
  out.commit();
  std::fprintf(summary_stream({&out}),
               "quantized %zu tokens (%zu tiles of %s, D=%d) into %zu bytes (%.2fx smaller than "
               "fp16 K+V) on %s\n",
               rows, tiles, to_string(params.preset).c_str(), d, records.size(),
               layout.compression(), backend->name().c_str());
  return kExitOk;
}

}  // namespace kvarn_cl::cli
