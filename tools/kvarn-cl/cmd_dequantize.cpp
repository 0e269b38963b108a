// kvarn-cl dequantize: KVarN records back to back -> fp16 keys and values [T][D], in the original
// frame (rotated back with H) or, with --rotated, as stored, on the chosen backend
// (dequantize_host of backend.hpp).
#include <cstdio>

#include "cli.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s{
      "dequantize",
      "Decode KVarN records of one KV head into fp16 keys and values.",
      {preset_option(true),
       head_dim_option(true),
       {"rotated", "", "write the rotated frame as stored (default: the original frame)", false},
       backend_option(),
       {"in", "R.kvarn", "records back to back, as written by kvarn-cl quantize", true},
       {"k-out", "K.f16", "output keys: raw little-endian fp16 [T][D]", true},
       {"v-out", "V.f16", "output values: raw little-endian fp16 [T][D]", true}},
      "The preset and head dimension must be those the records were written with; a file whose\n"
      "size is not a whole number of records, or a record with NaN/Inf scales, is rejected.\n"
      "Both outputs appear only when both are complete.\n" +
          output_policy_help()};
  return s;
}

}  // namespace

int run_dequantize(int argc, char** argv) {
  const Options opts(spec(), argc, argv);
  if (opts.help()) {
    std::fputs(help_text(spec()).c_str(), stdout);
    return kExitOk;
  }
  const CodecParams params = opts.codec_params();
  const BackendKind kind = opts.backend_kind();
  const Frame frame = opts.has("rotated") ? Frame::rotated : Frame::original;
  const RecordLayout layout = RecordLayout::make(params);
  const std::string in_path = opts.get("in"), in_what = "--in '" + in_path + "'";

  check_distinct_files({{"in", in_path}},
                       {{"k-out", opts.get("k-out")}, {"v-out", opts.get("v-out")}});
  const std::vector<std::uint8_t> records = read_file(in_path, "in");
  if (records.empty()) throw InvalidArgument(in_what + ": empty file");
  if (records.size() % layout.bytes != 0)
    throw InvalidArgument(in_what + ": size " + std::to_string(records.size()) +
                          " bytes is not a multiple of the record size " +
                          std::to_string(layout.bytes) + " of preset " + to_string(params.preset) +
                          " with --head-dim " + std::to_string(params.head_dim));
  const std::size_t tiles = records.size() / layout.bytes;
  const std::size_t rows = tiles * std::size_t(params.group());
  const std::size_t values = rows * std::size_t(params.head_dim);

  AtomicOutput k_out(opts.get("k-out"), "k-out");
  AtomicOutput v_out(opts.get("v-out"), "v-out");
  std::vector<half_bits> k(values), v(values);
  auto backend = open_backend(kind);
  try {
    dequantize_host(*backend, params, records.data(), tiles, frame, ElementType::f16, k.data(),
                    v.data());
  } catch (const CorruptRecord& e) {
    throw CorruptRecord(in_what + ": " + e.what());
  }

  // Little-endian fp16 on disk, independent of the host's byte order.
  auto to_bytes = [](const std::vector<half_bits>& h) {
    std::vector<std::uint8_t> b(h.size() * 2);
    for (std::size_t i = 0; i < h.size(); ++i) {
      b[2 * i] = std::uint8_t(h[i] & 0xFF);
      b[2 * i + 1] = std::uint8_t(h[i] >> 8);
    }
    return b;
  };
  const auto kb = to_bytes(k), vb = to_bytes(v);
  k_out.write(kb.data(), kb.size());
  v_out.write(vb.data(), vb.size());
  k_out.commit();
  try {
    v_out.commit();
  } catch (...) {
    k_out.remove_committed();  // all or nothing
    throw;
  }
  std::fprintf(summary_stream({&k_out, &v_out}),
               "decoded %zu records (%s, D=%d) into %zu tokens, %s frame, on %s\n", tiles,
               to_string(params.preset).c_str(), params.head_dim, rows,
               frame == Frame::rotated ? "rotated" : "original", backend->name().c_str());
  return kExitOk;
}

}  // namespace kvarn_cl::cli
