// CPU tile codec throughput: tiles per second and GB/s of fp16 K+V input (quantize) or output
// (dequantize), per preset and head_dim, on one thread and on all threads.
//   ./build/benchmarks/cpu_codec_bench --benchmark_counters_tabular=true
// Counters: tiles/s, GB/s of fp16 K+V, and bytes moved (fp16 + records) as a fraction of the
// host's memcpy bandwidth measured in the same run (copy_GB/s).
#include <benchmark/benchmark.h>

#include <random>
#include <thread>
#include <vector>

#include "common/host_copy_bandwidth.hpp"
#include "kvarn_cl/codec.hpp"

namespace {

using namespace kvarn_cl;

struct Data {
  std::vector<half_bits> k, v;
  std::vector<std::uint8_t> records;
};

Data make_data(const CodecParams& p, std::size_t tiles) {
  const RecordLayout l = RecordLayout::make(p);
  const std::size_t n = tiles * std::size_t(l.group) * l.head_dim;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> k(n), v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const bool outlier = (i % std::size_t(l.head_dim)) % 37 == 3;
    k[i] = normal(rng) * (outlier ? 20.0f : 1.0f);
    v[i] = normal(rng);
  }
  Data d;
  d.k.resize(n);
  d.v.resize(n);
  rotate_rows(k.data(), d.k.data(), n / std::size_t(l.head_dim), l.head_dim);
  rotate_rows(v.data(), d.v.data(), n / std::size_t(l.head_dim), l.head_dim);
  d.records.resize(tiles * l.bytes);
  return d;
}

unsigned threads_of(const benchmark::State& state) { return unsigned(state.range(2)); }

void set_counters(benchmark::State& state, const RecordLayout& l, std::size_t tiles) {
  const double items = double(state.iterations()) * double(tiles);
  state.counters["tiles/s"] = benchmark::Counter(items, benchmark::Counter::kIsRate);
  state.counters["fp16_GB/s"] =
      benchmark::Counter(items * double(l.fp16_bytes()) / 1e9, benchmark::Counter::kIsRate);
  // Bytes moved (fp16 rows + records) per second as a fraction of this host's memcpy bandwidth,
  // measured in the same process: how far the codec is from being memory-bound.
  state.counters["copy_GB/s"] = bench::host_copy_bandwidth() / 1e9;
  state.counters["fraction_of_copy"] = benchmark::Counter(
      items * double(l.fp16_bytes() + l.bytes) / bench::host_copy_bandwidth(),
      benchmark::Counter::kIsRate);
}

void BM_Quantize(benchmark::State& state) {
  const CodecParams p{all_presets()[std::size_t(state.range(0))], int(state.range(1)), 8};
  const RecordLayout l = RecordLayout::make(p);
  const unsigned threads = threads_of(state);
  const std::size_t tiles = 8 * std::max(1u, threads);
  Data d = make_data(p, tiles);
  for (auto _ : state) {
    quantize_tiles(p, d.k.data(), d.v.data(), tiles, d.records.data(), CpuThreads{threads});
    benchmark::DoNotOptimize(d.records.data());
  }
  state.SetLabel(to_string(p.preset) + " D=" + std::to_string(p.head_dim) + " threads=" +
                 std::to_string(threads));
  set_counters(state, l, tiles);
}

void BM_Dequantize(benchmark::State& state) {
  const CodecParams p{all_presets()[std::size_t(state.range(0))], int(state.range(1)), 8};
  const RecordLayout l = RecordLayout::make(p);
  const unsigned threads = threads_of(state);
  const std::size_t tiles = 32 * std::max(1u, threads);
  Data d = make_data(p, tiles);
  quantize_tiles(p, d.k.data(), d.v.data(), tiles, d.records.data(), CpuThreads{threads});
  std::vector<half_bits> ko(d.k.size()), vo(d.v.size());
  for (auto _ : state) {
    dequantize_tiles(p, d.records.data(), tiles, ko.data(), vo.data(), Frame::rotated,
                     CpuThreads{threads});
    benchmark::DoNotOptimize(ko.data());
  }
  state.SetLabel(to_string(p.preset) + " D=" + std::to_string(p.head_dim) + " threads=" +
                 std::to_string(threads));
  set_counters(state, l, tiles);
}

void Args(benchmark::internal::Benchmark* b) {
  const long all = long(std::max(1u, std::thread::hardware_concurrency()));
  for (long preset = 0; preset < 5; ++preset)
    for (long threads : {1L, all}) b->Args({preset, 128, threads});
  for (long d : {64L, 256L}) b->Args({0, d, all});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

}  // namespace

BENCHMARK(BM_Quantize)->Apply(Args);
BENCHMARK(BM_Dequantize)->Apply(Args);
BENCHMARK_MAIN();
