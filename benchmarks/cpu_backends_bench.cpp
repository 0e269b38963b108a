// The two ways to run on a CPU, side by side in one run: the C++ backend (SIMD codec and
// attention, its persistent thread pool) and the OpenCL backend on PoCL running the library's
// kernels on the same cores. This is the measurement behind `auto`'s rule for CPU-only OpenCL
// machines (src/factory/make_backend.cpp, docs/PERFORMANCE.md).
//   ./build/benchmarks/cpu_backends_bench --benchmark_counters_tabular=true
// Cases: fused k4v2_g128 decode (one layer, one query token per sequence) at D 128 with
// Hq 32 / Hk 8 and Hq = Hk = 8, contexts 1K-32K, batches 1 and 8; quantize and dequantize of
// 64 tiles. Counters, against probes measured in the same process: GB/s the step must read and
// its fraction of the host memcpy bandwidth (copy_GB/s), GFLOP/s of the attention arithmetic
// (4·D·Hq multiply-add FLOPs per cached token) and its fraction of the all-core fp32 FMA rate
// (fma_GFLOP/s). The CPU column is the process's CPU time (all threads).
#include <benchmark/benchmark.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/fma_rate.hpp"
#include "common/host_copy_bandwidth.hpp"
#include "common/random_values.hpp"
#include "kvarn_cl/kvarn_cl.hpp"
#include "kvarn_cl/thread_pool.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#endif

namespace {

using namespace kvarn_cl;

constexpr int kHk = 8, kD = 128;

using bench::normal_values;

// 0 = the C++ backend, 1 = OpenCL on the default device (PoCL on a machine without a GPU).
// Made once per process, so PoCL builds each program once.
std::shared_ptr<Backend> backend(int which, std::string* skip) {
  static std::shared_ptr<Backend> cpu(make_cpu_backend());
  if (which == 0) return cpu;
#if KVARN_CL_WITH_OPENCL
  static std::shared_ptr<Backend> cl;
  static std::string error;
  if (!cl && error.empty()) {
    try {
      cl = std::shared_ptr<Backend>(make_opencl_backend());
    } catch (const Error& e) {
      error = e.what();
    }
  }
  *skip = error;
  return cl;
#else
  *skip = "built without OpenCL";
  return nullptr;
#endif
}

double fma_all_cores() { return bench::fma_rate(ThreadPool::default_size()); }

// range: backend, Hq, context, batch
void BM_FusedDecode(benchmark::State& state) {
  std::string skip;
  const auto be = backend(int(state.range(0)), &skip);
  if (!be) return state.SkipWithError(skip.c_str());
  const int hq = int(state.range(1)), ctx = int(state.range(2)), batch = int(state.range(3));
  CacheConfig cfg;
  cfg.codec = CodecParams{Preset::k4v2_g128, kD, kDefaultSinkhornIters};
  cfg.num_layers = 1;
  cfg.num_kv_heads = kHk;
  cfg.max_sequences = batch;
  cfg.max_tokens_per_sequence = ctx;
  cfg.backend = be;
  KVCache cache(cfg);
  std::vector<SeqId> ids;
  const auto k = normal_values(std::size_t(ctx) * kHk * kD, 1), v = normal_values(k.size(), 2);
  for (int s = 0; s < batch; ++s) ids.push_back(cache.add_sequence());
  for (int s = 0; s < batch; ++s) cache.append(0, {ids[std::size_t(s)]}, {ctx}, k.data(), v.data());
  const auto q = normal_values(std::size_t(batch) * hq * kD, 3);
  std::vector<float> out(q.size());
  cache.attend(0, ids, hq, q.data(), out.data());  // warm-up (and PoCL's program build)
  for (auto _ : state) {
    cache.attend(0, ids, hq, q.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  const int G = cfg.codec.group(), sink = cache.sink_capacity();
  const int tiles = (ctx - sink) / G, fp16_tokens = ctx - tiles * G;
  const double bytes = double(batch) * kHk *
                       (double(tiles) * double(cache.layout().bytes) + double(fp16_tokens) * kD * 4.0);
  const double flops = 4.0 * kD * hq * double(ctx) * batch;
  const double n = double(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(bytes * n / 1e9, benchmark::Counter::kIsRate);
  state.counters["of_copy"] = benchmark::Counter(bytes * n / bench::host_copy_bandwidth(),
                                                 benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(flops * n / 1e9, benchmark::Counter::kIsRate);
  state.counters["of_fma"] = benchmark::Counter(flops * n / fma_all_cores(), benchmark::Counter::kIsRate);
  state.counters["copy_GB/s"] = bench::host_copy_bandwidth() / 1e9;
  state.counters["fma_GFLOP/s"] = fma_all_cores() / 1e9;
  state.SetLabel(be->name());
}

struct CodecData {
  CodecParams params{Preset::k4v2_g128, kD, kDefaultSinkhornIters};
  std::size_t tiles = 64;
  std::unique_ptr<Buffer> k, v, records, k_out, v_out;
  std::vector<QuantizeJob> jobs;
  std::vector<std::uint32_t> ids;

  explicit CodecData(Backend& be) {
    const RecordLayout l = RecordLayout::make(params);
    const std::size_t rows = tiles * std::size_t(l.group), n = rows * kD;
    auto kf = normal_values(n, 7), vf = normal_values(n, 8);
    for (std::size_t i = 3; i < n; i += 37) kf[i] *= 20.0f;
    std::vector<half_bits> kh(n), vh(n);
    rotate_rows(kf.data(), kh.data(), rows, kD);
    rotate_rows(vf.data(), vh.data(), rows, kD);
    k = be.allocate(n * 2);
    v = be.allocate(n * 2);
    be.write(*k, 0, kh.data(), n * 2);
    be.write(*v, 0, vh.data(), n * 2);
    records = be.allocate(tiles * l.bytes);
    k_out = be.allocate(n * 2);
    v_out = be.allocate(n * 2);
    for (std::size_t i = 0; i < tiles; ++i) {
      jobs.push_back({std::uint32_t(i * std::size_t(l.group)), std::uint32_t(i)});
      ids.push_back(std::uint32_t(i));
    }
    be.quantize(params, *k, *v, jobs, *records);  // warm-up (and PoCL's program build)
    be.finish();
  }
};

void codec_counters(benchmark::State& state, const CodecData& d, bool dequantize) {
  const RecordLayout l = RecordLayout::make(d.params);
  const double items = double(state.iterations()) * double(d.tiles);
  const unsigned cores = ThreadPool::default_size();
  state.counters["tiles/s"] = benchmark::Counter(items, benchmark::Counter::kIsRate);
  state.counters["tiles/s/core"] = benchmark::Counter(items / cores, benchmark::Counter::kIsRate);
  const double moved = items * double(l.fp16_bytes() + l.bytes);
  state.counters["GB/s"] = benchmark::Counter(moved / 1e9, benchmark::Counter::kIsRate);
  if (dequantize)
    state.counters["of_copy"] =
        benchmark::Counter(moved / bench::host_copy_bandwidth(), benchmark::Counter::kIsRate);
  state.counters["copy_GB/s"] = bench::host_copy_bandwidth() / 1e9;
}

void BM_Quantize(benchmark::State& state) {
  std::string skip;
  const auto be = backend(int(state.range(0)), &skip);
  if (!be) return state.SkipWithError(skip.c_str());
  CodecData d(*be);
  for (auto _ : state) {
    be->quantize(d.params, *d.k, *d.v, d.jobs, *d.records);
    be->finish();
  }
  codec_counters(state, d, false);
  state.SetLabel(be->name());
}

void BM_Dequantize(benchmark::State& state) {
  std::string skip;
  const auto be = backend(int(state.range(0)), &skip);
  if (!be) return state.SkipWithError(skip.c_str());
  CodecData d(*be);
  for (auto _ : state) {
    be->dequantize(d.params, *d.records, d.ids, Frame::rotated, *d.k_out, *d.v_out);
    be->finish();
  }
  codec_counters(state, d, true);
  state.SetLabel(be->name());
}

void decode_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"backend", "hq", "ctx", "batch"});
  for (int backend : {0, 1}) {
    for (int ctx : {1024, 8192, 32768}) b->Args({backend, 32, ctx, 1});
    for (int ctx : {1024, 8192}) b->Args({backend, 32, ctx, 8});
    for (int ctx : {1024, 8192, 32768}) b->Args({backend, 8, ctx, 1});
  }
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

void codec_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"backend"})->Arg(0)->Arg(1);
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
}

BENCHMARK(BM_FusedDecode)->Apply(decode_args);
BENCHMARK(BM_Quantize)->Apply(codec_args);
BENCHMARK(BM_Dequantize)->Apply(codec_args);

}  // namespace

BENCHMARK_MAIN();
