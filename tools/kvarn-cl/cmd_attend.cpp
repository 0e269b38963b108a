// kvarn-cl attend: one decode step of attention over a KVarN cache built from files. All T tokens
// of K/V go into a fresh one-sequence cache (sink, tiles, tail as the cache decides); the query
// attends to them with scale 1/sqrt(D) and the output is written in the original frame as fp32.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "cli.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s{
      "attend",
      "Decode attention of one query token over K/V files through a KVarN cache.",
      {{"preset", "P", preset_option(true).help + "; required unless --layer-presets is given",
        false},
       {"layer-presets", "FILE",
        "per-layer presets (a layer-preset file, e.g. from kvarn-eval --calibrate): the cache "
        "gets\n"
        "                            one layer per line and K/V go to --layer",
        false},
       {"layer", "L", "layer of a --layer-presets cache to fill and attend (default 0)", false},
       {"recent-tokens", "R",
        "newest tokens kept exact (fp16) beyond the still-filling tile, 0..65536 (default " +
            std::to_string(kDefaultRecentTokens) + "; 0 turns the window off)",
        false},
       head_dim_option(true),
       {"q-heads", "HQ", "query heads", true},
       {"kv-heads", "HK", "KV heads; HQ must be a multiple (query head h reads KV head h/(HQ/HK))",
        true},
       {"q", "Q.f16", "query: raw little-endian fp16 [HQ][D], original frame", true},
       {"k", "K.f16", "keys: raw little-endian fp16 [T][HK][D] token-major, original frame, T >= 1",
        true},
       {"v", "V.f16", "values: same shape as --k", true},
       {"out", "O.f32", "output: raw little-endian fp32 [HQ][D], original frame", true},
       {"path", "fused|materialize",
        "read the records directly (fused, default) or dequantize to fp16 first", false},
       iters_option(),
       backend_option()},
      "The first G tokens stay fp16 (the attention sink), complete tiles after them are "
      "quantized,\n"
      "the rest stays in the fp16 tail, exactly as in an inference engine's cache. With\n"
      "--recent-tokens R a tile is quantized only once all its tokens are older than the newest "
      "R.\n" +
          output_policy_help()};
  return s;
}

}  // namespace

int run_attend(int argc, char** argv) {
  const Options opts(spec(), argc, argv);
  if (opts.help()) {
    std::fputs(help_text(spec()).c_str(), stdout);
    return kExitOk;
  }
  if (opts.has("layer-presets") == opts.has("preset"))
    throw UsageError(opts.has("preset") ? "give --preset or --layer-presets, not both"
                                        : "missing option --preset (or --layer-presets)");
  if (opts.has("layer") && !opts.has("layer-presets"))
    throw UsageError("--layer needs --layer-presets");
  std::vector<Preset> layer_presets;
  if (opts.has("layer-presets")) {
    try {
      layer_presets = read_layer_presets(opts.get("layer-presets"));
    } catch (const InvalidArgument& e) {
      throw UsageError(std::string("invalid --layer-presets: ") + e.what());
    }
  }
  const int layer =
      int(opts.get_int("layer", 0, 0, std::max<long>(0, long(layer_presets.size()) - 1)));
  const int recent = int(opts.get_int("recent-tokens", kDefaultRecentTokens, 0, 65536));
  CodecParams params = opts.codec_params();
  if (!layer_presets.empty()) params.preset = layer_presets[std::size_t(layer)];
  const BackendKind kind = opts.backend_kind();
  const int d = params.head_dim;
  const int hq = int(opts.get_int("q-heads", 0, 1, 1024));
  const int hk = int(opts.get_int("kv-heads", 0, 1, 1024));
  if (hq % hk != 0)
    throw UsageError("invalid --q-heads " + std::to_string(hq) + ": not a multiple of --kv-heads " +
                     std::to_string(hk));
  const std::string path_name = opts.get_or("path", "fused");
  if (path_name != "fused" && path_name != "materialize")
    throw UsageError("invalid --path '" + path_name + "': expected fused or materialize");
  const AttendPath path = path_name == "fused" ? AttendPath::fused : AttendPath::materialize;

  // Rows of HK*D values: a token of K/V, or (with HQ*D columns) the whole query.
  check_distinct_files({{"q", opts.get("q")}, {"k", opts.get("k")}, {"v", opts.get("v")}},
                       {{"out", opts.get("out")}});
  const std::string kv_what = "--kv-heads x --head-dim = " + std::to_string(hk * d);
  std::size_t q_rows = 0, k_rows = 0, v_rows = 0;
  const auto q =
      read_f16_rows(opts.get("q"), "q", hq * d,
                    "--q-heads x --head-dim = " + std::to_string(hq * d), 1, "", &q_rows);
  if (q_rows != 1)
    throw InvalidArgument(
        "--q '" + opts.get("q") +
        "': " + std::to_string(q_rows * std::size_t(hq) * std::size_t(d)) +
        " fp16 values, expected --q-heads x --head-dim = " + std::to_string(hq * d));
  const auto k = read_f16_rows(opts.get("k"), "k", hk * d, kv_what, 1, "", &k_rows);
  const auto v = read_f16_rows(opts.get("v"), "v", hk * d, kv_what, 1, "", &v_rows);
  if (k_rows != v_rows)
    throw InvalidArgument("--k '" + opts.get("k") + "' has " + std::to_string(k_rows) +
                          " tokens but --v '" + opts.get("v") + "' has " + std::to_string(v_rows));
  if (k_rows > std::size_t(1) << 30)
    throw InvalidArgument("--k '" + opts.get("k") + "': " + std::to_string(k_rows) +
                          " tokens is more than one sequence can hold");
  AtomicOutput out(opts.get("out"), "out");

  CacheConfig cfg;
  cfg.codec = params;
  cfg.num_layers = layer_presets.empty() ? 1 : int(layer_presets.size());
  cfg.layer_presets = layer_presets;
  cfg.recent_tokens = recent;
  cfg.num_kv_heads = hk;
  cfg.max_sequences = 1;
  cfg.max_tokens_per_sequence = int(k_rows);
  cfg.backend = open_backend(kind);
  KVCache cache(cfg);
  const SeqId seq = cache.add_sequence();
  cache.append(layer, {seq}, {int(k_rows)}, k.data(), v.data());

  std::vector<float> qf(q.size()), o(q.size());
  halves_to_floats(q.data(), qf.data(), q.size());
  cache.attend(layer, {seq}, hq, qf.data(), o.data(), 1.0f / std::sqrt(float(d)), path);
  cache.backend().finish();

  std::vector<std::uint8_t> bytes(o.size() * 4);
  for (std::size_t i = 0; i < o.size(); ++i) {  // little-endian fp32 on disk
    std::uint32_t u;
    static_assert(sizeof u == sizeof(float), "fp32");
    std::memcpy(&u, &o[i], 4);
    for (int b = 0; b < 4; ++b) bytes[4 * i + std::size_t(b)] = std::uint8_t(u >> (8 * b));
  }
  out.write(bytes.data(), bytes.size());
  out.commit();
  const int sink = std::min(int(k_rows), cache.sink_capacity()),
            tiles = cache.quantized_tiles(seq, layer);
  std::fprintf(
      summary_stream({&out}),
      "attended %d query heads over %zu tokens (%d sink, %d tiles of %s, %d tail%s) on %s, "
      "%s path%s\n",
      hq, k_rows, sink, tiles, to_string(params.preset).c_str(),
      cache.length(seq, layer) - sink - tiles * params.group(),
      recent ? (", " + std::to_string(recent) + " recent kept exact").c_str() : "",
      cfg.backend->name().c_str(), path_name.c_str(),
      layer_presets.empty()
          ? ""
          : (", layer " + std::to_string(layer) + " of " + std::to_string(layer_presets.size()))
                .c_str());
  return kExitOk;
}

}  // namespace kvarn_cl::cli
