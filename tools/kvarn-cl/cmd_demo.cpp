// kvarn-cl demo: the main job. On the default device (backend auto), a long-context multi-sequence
// KV cache is built from generated keys and values with real-model structure (synthetic_kv.hpp),
// once per preset, and compared with an fp16 cache: bytes resident, compression, attention-output
// error against exact fp32 attention, and the time of one decode step through the fused path,
// the materialize path and fp16 attention. Every number is measured by this run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>

#include "cli.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/codec.hpp"  // relative_error
#include "kvarn_cl/error.hpp"
#include "synthetic_kv.hpp"

namespace kvarn_cl::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s{
      "demo",
      "Build a long-context multi-sequence KVarN cache from generated keys and values (outlier\n"
      "channels, rotary patterns) with every preset on the default device, and compare it with an\n"
      "fp16 cache: bytes resident, compression, attention error, decode-step time.",
      {head_dim_option(false),
       {"tokens", "T", "tokens of the longest sequence (default 16384)", false},
       {"sequences", "S", "sequences in the batch, of decreasing length (default 4)", false},
       {"kv-heads", "HK", "KV heads (default 2)", false},
       {"q-heads", "HQ", "query heads, a multiple of HK (default 8)", false},
       {"reps", "N", "timed decode steps per path; the median is shown (default 5)", false},
       {"seed", "S", "seed of the generated data (default 1)", false},
       backend_option()},
      "bytes: every byte the cache holds (records, fp16 sink and tail, block tables, workspaces),\n"
      "from KVCache::memory_report(); for fp16, the K and V rows of every token.\n"
      "ratio: fp16 bytes of the same tokens divided by that.\n"
      "attn error: ||o - o_exact|| / ||o_exact|| over every query head of every sequence, where\n"
      "o_exact is fp32 attention (accumulated in double) over the original fp16 keys and values.\n"
      "step: wall time of one decode-step attention call for the whole batch (one layer), median\n"
      "of --reps runs after a warm-up, including the host<->device copies of q and o.\n"};
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median_seconds(int reps, const std::function<void()>& step) {
  step();  // warm-up: kernel builds, workspace growth
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Workload {
  int d = 0, kv_heads = 0, q_heads = 0;
  std::vector<int> lengths;
  std::vector<std::vector<half_bits>> k, v;  // per sequence [T][Hk][D], original frame
  std::vector<float> q;                      // [S][Hq][D]
  std::vector<float> exact;                  // [S][Hq][D]
  std::size_t tokens() const {
    std::size_t n = 0;
    for (int l : lengths) n += std::size_t(l);
    return n;
  }
};

Workload make_workload(int d, int kv_heads, int q_heads, std::size_t longest, int sequences,
                       std::uint32_t seed) {
  Workload w;
  w.d = d;
  w.kv_heads = kv_heads;
  w.q_heads = q_heads;
  const std::size_t hd = std::size_t(kv_heads) * std::size_t(d);
  for (int s = 0; s < sequences; ++s) {
    // Decreasing lengths that are not tile multiples, so tails hold tokens too. Signed arithmetic:
    // with few tokens and many sequences the offsets exceed the length, which clamps to 1 token.
    const long long shrink =
        static_cast<long long>(std::size_t(s) * longest / std::size_t(sequences)) +
        (s == 0 ? 0 : 37LL * s);
    const std::size_t len =
        std::size_t(std::max<long long>(1, static_cast<long long>(longest) - shrink));
    const SyntheticKv kv =
        synthetic_kv(len, kv_heads, d, seed + 1000u * std::uint32_t(s), 17 * std::size_t(s));
    w.lengths.push_back(int(len));
    std::vector<half_bits> k(kv.k.size()), v(kv.v.size());
    floats_to_halves(kv.k.data(), k.data(), k.size());
    floats_to_halves(kv.v.data(), v.data(), v.size());
    const std::vector<float> q = synthetic_queries(kv, q_heads, len, seed + 7u + std::uint32_t(s));
    w.q.insert(w.q.end(), q.begin(), q.end());

    // Exact attention over the fp16 values the caches receive, head-major [Hk][T][D] in fp32.
    std::vector<float> kh(k.size()), vh(v.size());
    for (std::size_t t = 0; t < len; ++t)
      for (int h = 0; h < kv_heads; ++h)
        for (int c = 0; c < d; ++c) {
          const std::size_t from = t * hd + std::size_t(h) * std::size_t(d) + std::size_t(c);
          const std::size_t to = (std::size_t(h) * len + t) * std::size_t(d) + std::size_t(c);
          kh[to] = half_to_float(k[from]);
          vh[to] = half_to_float(v[from]);
        }
    std::vector<float> out(q.size());
    exact_attention(q.data(), kh.data(), vh.data(), q_heads, kv_heads, d, int(len),
                    1.0f / std::sqrt(float(d)), out.data());
    w.exact.insert(w.exact.end(), out.begin(), out.end());
    w.k.push_back(std::move(k));
    w.v.push_back(std::move(v));
  }
  return w;
}

constexpr int kPrefillChunk = 256;

struct Row {
  std::string name;
  double bytes = 0, ratio = 0;
  double materialize_workspace = -1;  // extra bytes the materialize path keeps
  double error_fused = -1, error_materialize = -1;
  double fused_s = -1, materialize_s = -1;
  double build_s = 0;
  std::string note;
};

void print_row(const Row& r) {
  auto err = [](double e) {
    char b[32];
    if (e < 0) return std::string("n/a");
    std::snprintf(b, sizeof b, "%.2e", e);
    return std::string(b);
  };
  auto ms = [](double s) {
    char b[32];
    if (s < 0) return std::string("n/a");
    std::snprintf(b, sizeof b, "%.3f ms", 1e3 * s);
    return std::string(b);
  };
  std::printf("  %-10s %11s %7.2fx %11s %12s %12s %12s %11s %7.1f s%s%s\n", r.name.c_str(),
              format_bytes(r.bytes).c_str(), r.ratio, err(r.error_fused).c_str(),
              err(r.error_materialize).c_str(), ms(r.fused_s).c_str(), ms(r.materialize_s).c_str(),
              r.materialize_workspace < 0 ? "n/a" : format_bytes(r.materialize_workspace).c_str(),
              r.build_s, r.note.empty() ? "" : "  ", r.note.c_str());
}

// An unsupported path (a backend that lacks it) is shown as n/a with the reason, not a failure.
template <class F>
bool try_path(F&& f, std::string& note) {
  try {
    f();
    return true;
  } catch (const Unsupported& e) {
    note = e.what();
    return false;
  }
}

Row run_preset(const std::shared_ptr<Backend>& backend, const Workload& w, Preset preset,
               int reps) {
  Row row;
  row.name = to_string(preset);
  CacheConfig cfg;
  cfg.codec.preset = preset;
  cfg.codec.head_dim = w.d;
  cfg.num_layers = 1;
  cfg.num_kv_heads = w.kv_heads;
  cfg.max_sequences = int(w.lengths.size());
  cfg.max_tokens_per_sequence = *std::max_element(w.lengths.begin(), w.lengths.end());
  cfg.backend = backend;
  // Size the record pool for this batch (an engine sizes it from its memory budget), rather than
  // for every sequence reaching the longest length.
  int blocks = 0;
  for (int len : w.lengths) blocks += len / cfg.codec.group() + 1;
  cfg.pool_blocks = blocks;

  const auto t0 = std::chrono::steady_clock::now();
  KVCache cache(cfg);
  std::vector<SeqId> ids;
  for (std::size_t s = 0; s < w.lengths.size(); ++s) ids.push_back(cache.add_sequence());
  // Chunked prefill, as an inference engine does it: each append covers the next kPrefillChunk
  // tokens of every sequence that has some left (one batched quantize for all new tiles), so the
  // staging workspaces stay small next to the records.
  const std::size_t hd = std::size_t(w.kv_heads) * std::size_t(w.d);
  for (int start = 0;; start += kPrefillChunk) {
    std::vector<SeqId> batch;
    std::vector<int> counts;
    std::vector<half_bits> k_chunk, v_chunk;
    for (std::size_t s = 0; s < w.lengths.size(); ++s) {
      const int n = std::min(kPrefillChunk, w.lengths[s] - start);
      if (n <= 0) continue;
      batch.push_back(ids[s]);
      counts.push_back(n);
      const auto from = std::ptrdiff_t(std::size_t(start) * hd),
                 to = from + std::ptrdiff_t(std::size_t(n) * hd);
      k_chunk.insert(k_chunk.end(), w.k[s].begin() + from, w.k[s].begin() + to);
      v_chunk.insert(v_chunk.end(), w.v[s].begin() + from, w.v[s].begin() + to);
    }
    if (batch.empty()) break;
    cache.append(0, batch, counts, k_chunk.data(), v_chunk.data());
  }
  backend->finish();
  row.build_s = seconds_since(t0);

  std::vector<float> out(w.q.size());
  std::string note;
  if (try_path(
          [&] { cache.attend(0, ids, w.q_heads, w.q.data(), out.data(), 0.0f, AttendPath::fused); },
          note)) {
    row.error_fused = relative_error(out, w.exact);
    row.fused_s = median_seconds(reps, [&] {
      cache.attend(0, ids, w.q_heads, w.q.data(), out.data(), 0.0f, AttendPath::fused);
    });
  }
  // Resident bytes of the cache as the fused decode path uses it: pools, tables, workspaces.
  const MemoryReport m = cache.memory_report();
  row.bytes = double(m.total());
  row.ratio = double(m.fp16_equivalent) / double(m.total());
  if (try_path(
          [&] {
            cache.attend(0, ids, w.q_heads, w.q.data(), out.data(), 0.0f, AttendPath::materialize);
          },
          note)) {
    row.error_materialize = relative_error(out, w.exact);
    row.materialize_s = median_seconds(reps, [&] {
      cache.attend(0, ids, w.q_heads, w.q.data(), out.data(), 0.0f, AttendPath::materialize);
    });
    row.materialize_workspace = double(cache.memory_report().total()) - row.bytes;
  }
  row.note = note;
  return row;
}

// The fp16 baseline: the same tokens in plain fp16 buffers, Backend::attend_fp16 (original frame).
Row run_fp16(Backend& backend, const Workload& w, int reps) {
  Row row;
  row.name = "fp16";
  const int cap = *std::max_element(w.lengths.begin(), w.lengths.end());
  const std::size_t seqs = w.lengths.size(), d = std::size_t(w.d), hk = std::size_t(w.kv_heads);
  const std::size_t rows = seqs * hk * std::size_t(cap);
  std::vector<half_bits> k(rows * d, 0), v(rows * d, 0);  // [S][Hk][cap][D]
  for (std::size_t s = 0; s < seqs; ++s)
    for (std::size_t t = 0; t < std::size_t(w.lengths[s]); ++t)
      for (std::size_t h = 0; h < hk; ++h)
        for (std::size_t c = 0; c < d; ++c) {
          const std::size_t to = ((s * hk + h) * std::size_t(cap) + t) * d + c;
          k[to] = w.k[s][(t * hk + h) * d + c];
          v[to] = w.v[s][(t * hk + h) * d + c];
        }
  auto kb = backend.allocate(k.size() * 2), vb = backend.allocate(v.size() * 2);
  auto lens = backend.allocate(seqs * sizeof(std::int32_t));
  auto qb = backend.allocate(w.q.size() * sizeof(float)),
       ob = backend.allocate(w.q.size() * sizeof(float));
  backend.write(*kb, 0, k.data(), k.size() * 2);
  backend.write(*vb, 0, v.data(), v.size() * 2);
  std::vector<std::int32_t> len32(w.lengths.begin(), w.lengths.end());
  backend.write(*lens, 0, len32.data(), len32.size() * sizeof(std::int32_t));

  AttendFp16Args a = AttendFp16Args::over(int(seqs), w.q_heads, w.kv_heads, w.d, *qb, *ob, *kb, *vb,
                                          cap, *lens, Frame::original);
  a.host_seq_lens = len32.data();
  std::vector<float> out(w.q.size());
  auto step = [&] {
    backend.write_async(*qb, 0, w.q.data(), w.q.size() * sizeof(float));
    backend.attend_fp16(a);
    backend.read(*ob, 0, out.data(), out.size() * sizeof(float));
  };
  std::string note;
  if (try_path(step, note)) {
    row.error_fused = relative_error(out, w.exact);
    row.fused_s = median_seconds(reps, step);
  }
  row.note = note;
  // Bytes of the live tokens' K and V rows (the padded buffer above is a convenience of the demo).
  row.bytes = double(w.tokens() * hk * d * 2 * sizeof(half_bits));
  row.ratio = 1.0;
  return row;
}

}  // namespace

int run_demo(int argc, char** argv) {
  const Options opts(spec(), argc, argv);
  if (opts.help()) {
    std::fputs(help_text(spec()).c_str(), stdout);
    return kExitOk;
  }
  const int d = opts.codec_params().head_dim;
  const std::size_t longest = std::size_t(opts.get_int("tokens", 16384, 1, 1L << 20));
  const int sequences = int(opts.get_int("sequences", 4, 1, 256));
  const int kv_heads = int(opts.get_int("kv-heads", 2, 1, 64));
  const int q_heads = int(opts.get_int("q-heads", 8, 1, 256));
  if (q_heads % kv_heads != 0)
    throw UsageError("invalid --q-heads " + std::to_string(q_heads) +
                     ": expected a multiple of --kv-heads " + std::to_string(kv_heads));
  const int reps = int(opts.get_int("reps", 5, 1, 1000));
  const auto seed = std::uint32_t(opts.get_int("seed", 1, 0, 0xFFFFFFFFL));
  const std::shared_ptr<Backend> backend = open_backend(opts.backend_kind());

  std::fflush(stdout);
  const Workload w = make_workload(d, kv_heads, q_heads, longest, sequences, seed);
  std::printf("kvarn-cl demo on %s\n", backend->name().c_str());
  std::printf("batch: %d sequences of", sequences);
  for (int l : w.lengths) std::printf(" %d", l);
  std::printf(" tokens; %d KV heads, %d query heads, D=%d; one layer, one decode step\n", kv_heads,
              q_heads, d);
  std::printf(
      "data: generated (seed %u): outlier key channels, rotary position patterns, loud\n"
      "      value channels, per-token value loudness; queries lean toward earlier keys\n\n",
      seed);
  std::printf("  %-10s %11s %8s %11s %12s %12s %12s %11s %9s\n", "cache", "resident", "ratio",
              "attn error", "err (mat.)", "fused step", "mat. step", "mat. extra", "build");
  print_row(run_fp16(*backend, w, reps));
  for (Preset p : all_presets()) print_row(run_preset(backend, w, p, reps));
  std::printf(
      "\nresident: every byte the cache holds after the prefill and the fused decode steps\n"
      "  (records, fp16 sink and tail, block tables, workspaces); fp16: the K/V rows alone.\n"
      "ratio: fp16 bytes of the same tokens / resident. err: relative to exact fp32 attention.\n"
      "fused step: attention straight from the records (one call for the batch); mat. step:\n"
      "  dequantize every tile to fp16, then fp16 attention; mat. extra: workspace it adds.\n"
      "fp16 step: plain fp16 attention over uncompressed K/V, shown in the fused column.\n"
      "build: cache creation and the chunked prefill (%d tokens per sequence per append).\n",
      kPrefillChunk);
  return kExitOk;
}

}  // namespace kvarn_cl::cli
