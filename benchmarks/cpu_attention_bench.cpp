// CPU decode-step attention, one layer, Llama-3-8B geometry (Hq 32, Hk 8, D 128): the fused path
// straight from the records, the materialize path (dequantize the batch to fp16, then plain
// attention) and plain fp16 attention over an uncompressed cache, at contexts of 1K-8K tokens.
// Counters: bytes the step must read (records + fp16 sink/tail, or fp16 K/V) per second, and that
// rate as a fraction of the host's memcpy bandwidth measured in the same run.
//   ./build/benchmarks/cpu_attention_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/host_copy_bandwidth.hpp"
#include "common/random_values.hpp"
#include "kvarn_cl/kvarn_cl.hpp"

namespace {

using namespace kvarn_cl;

constexpr int kHq = 32, kHk = 8, kD = 128;

using bench::normal_values;

void set_counters(benchmark::State& state, double bytes_per_step) {
  const double rate = bytes_per_step * double(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(rate / 1e9, benchmark::Counter::kIsRate);
  state.counters["copy_GB/s"] = bench::host_copy_bandwidth() / 1e9;
  state.counters["bytes/step"] = bytes_per_step;
}

// range(0) = context tokens, range(1) = batch, range(2) = 0 fused / 1 materialize, range(3) =
// recent_tokens (128: the library default; 0: the window off, for its cost)
void BM_CacheDecode(benchmark::State& state) {
  const int ctx = int(state.range(0)), batch = int(state.range(1));
  const AttendPath path = state.range(2) == 0 ? AttendPath::fused : AttendPath::materialize;
  CacheConfig cfg;
  cfg.codec = CodecParams{Preset::k4v2_g128, kD, kDefaultSinkhornIters};
  cfg.num_layers = 1;
  cfg.num_kv_heads = kHk;
  cfg.max_sequences = batch;
  cfg.max_tokens_per_sequence = ctx;
  cfg.recent_tokens = int(state.range(3));
  cfg.backend = std::shared_ptr<Backend>(make_cpu_backend());
  KVCache cache(cfg);
  std::vector<SeqId> ids;
  const auto k = normal_values(std::size_t(ctx) * kHk * kD, 1), v = normal_values(k.size(), 2);
  for (int s = 0; s < batch; ++s) {
    ids.push_back(cache.add_sequence());
    cache.append(0, {ids.back()}, {ctx}, k.data(), v.data());
  }
  const auto q = normal_values(std::size_t(batch) * kHq * kD, 3);
  std::vector<float> out(q.size());
  for (auto _ : state) {
    cache.attend(0, ids, kHq, q.data(), out.data(), 0.0f, path);
    benchmark::DoNotOptimize(out.data());
  }
  const int tiles = cache.quantized_tiles(ids.front(), 0), fp16_tokens = ctx - tiles * cfg.codec.group();
  const double bytes = double(batch) * kHk *
                       (double(tiles) * double(cache.layout().bytes) + double(fp16_tokens) * kD * 4.0);
  set_counters(state, bytes);
  state.SetLabel(std::string(path == AttendPath::fused ? "fused" : "materialize") + " k4v2_g128 recent " +
                 std::to_string(cfg.recent_tokens) + " " + cfg.backend->name());
}

// range(0) = context tokens, range(1) = batch
void BM_Fp16Decode(benchmark::State& state) {
  const int ctx = int(state.range(0)), batch = int(state.range(1));
  auto be = make_cpu_backend();
  const std::size_t rows = std::size_t(batch) * kHk * ctx;
  const auto kv = normal_values(rows * kD, 4);
  std::vector<half_bits> h(kv.size());
  floats_to_halves(kv.data(), h.data(), h.size());
  auto kb = be->allocate(rows * kD * 2), vb = be->allocate(rows * kD * 2);
  be->write(*kb, 0, h.data(), rows * kD * 2);
  be->write(*vb, 0, h.data(), rows * kD * 2);
  const auto q = normal_values(std::size_t(batch) * kHq * kD, 5);
  auto qb = be->allocate(q.size() * 4), ob = be->allocate(q.size() * 4), lb = be->allocate(std::size_t(batch) * 4);
  be->write(*qb, 0, q.data(), q.size() * 4);
  const std::vector<std::int32_t> lens(std::size_t(batch), ctx);
  be->write(*lb, 0, lens.data(), lens.size() * 4);
  const AttendFp16Args a =
      AttendFp16Args::over(batch, kHq, kHk, kD, *qb, *ob, *kb, *vb, ctx, *lb, Frame::original);
  for (auto _ : state) {
    be->attend_fp16(a);
    benchmark::DoNotOptimize(ob->host_data());
  }
  set_counters(state, double(rows) * kD * 4.0);
  state.SetLabel("fp16 " + be->name());
}

void contexts(benchmark::internal::Benchmark* b, bool with_path) {
  for (int ctx : {1024, 2048, 4096, 8192})
    for (int batch : {1, 4}) {
      if (with_path) {
        for (int path : {0, 1}) b->Args({ctx, batch, path, kDefaultRecentTokens});
        b->Args({ctx, batch, 0, 0});  // fused without the window: what the default costs
      } else {
        b->Args({ctx, batch});
      }
    }
  b->Unit(benchmark::kMicrosecond)->UseRealTime()->MeasureProcessCPUTime();
}

BENCHMARK(BM_CacheDecode)->Apply([](benchmark::internal::Benchmark* b) { contexts(b, true); })
    ->ArgNames({"ctx", "batch", "materialize", "recent"});
BENCHMARK(BM_Fp16Decode)->Apply([](benchmark::internal::Benchmark* b) { contexts(b, false); })
    ->ArgNames({"ctx", "batch"});

}  // namespace

BENCHMARK_MAIN();
