// What a caller waits for: one whole decode-step attention through the public API,
// KVCache::attend (argument building, uploads, launches, the output read), beside the kernel
// time of the same call (event profiling of its split and merge kernels), on the default OpenCL
// device. One layer, k4v2_g128, D 128, every sequence at the same context.
//   BM_CacheStep/host     q and out in host memory (the call ends with the output read)
//   BM_CacheStep/device   q and out in device buffers of the cache's backend (+ finish())
// Counters: wall_us (median wall-clock per call), kernel_us (median kernel time), host_overhead
// = wall_us / kernel_us - 1, kernel (2 = matrix units, 1 = short, 0 = tile slots).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/opencl_timing.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"
#include "opencl/opencl_backend.hpp"
#include "opencl/opencl_backend_tuning.hpp"

namespace {

using namespace kvarn_cl;

struct Shape {
  int hq, hk, context, batch;
};

std::shared_ptr<Backend> g_backend;  // set by main for the run (no global cl:: objects)

void BM_CacheStep_body(benchmark::State& state, Shape s, bool device_io) {
  opencl::internal::OpenCLBackendTuning cl(static_cast<opencl::OpenCLBackend&>(*g_backend));
  const int D = 128;
  CacheConfig cfg;
  cfg.codec = CodecParams{Preset::k4v2_g128, D, kDefaultSinkhornIters};
  cfg.num_layers = 1;
  cfg.num_kv_heads = s.hk;
  cfg.max_sequences = s.batch;
  cfg.max_tokens_per_sequence = s.context;
  cfg.backend = g_backend;
  KVCache cache(cfg);
  std::vector<SeqId> ids;
  for (int b = 0; b < s.batch; ++b) ids.push_back(cache.add_sequence());
  // Prefill with one random fp16 chunk of 1024 tokens per sequence, appended until the context.
  const int chunk = std::min(1024, s.context);
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  if (s.context % chunk != 0) throw InvalidArgument("context must be a multiple of 1024");
  std::vector<half_bits> k1(std::size_t(chunk) * s.hk * D), v1(k1.size()), k, v;
  for (auto& x : k1) x = float_to_half(n(rng));
  for (auto& x : v1) x = float_to_half(n(rng));
  for (int b = 0; b < s.batch; ++b) {  // [chunk][Hk][D] per sequence, back to back
    k.insert(k.end(), k1.begin(), k1.end());
    v.insert(v.end(), v1.begin(), v1.end());
  }
  const std::vector<int> counts(std::size_t(s.batch), chunk);
  for (int done = 0; done < s.context; done += chunk) cache.append(0, ids, counts, k.data(), v.data());
  std::vector<float> q(std::size_t(s.batch) * s.hq * D), out(q.size());
  for (auto& x : q) x = n(rng);
  auto qb = g_backend->allocate(q.size() * 4), ob = g_backend->allocate(q.size() * 4);
  g_backend->write(*qb, 0, q.data(), q.size() * 4);
  auto step = [&] {
    if (device_io) {
      cache.attend(0, ids, s.hq, *qb, *ob, ElementType::f32);
      g_backend->finish();
    } else {
      cache.attend(0, ids, s.hq, q.data(), out.data());
    }
  };
  for (int i = 0; i < 3; ++i) step();
  std::vector<double> wall, kern;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(w);
    wall.push_back(w);
    kern.push_back(bench::span_seconds(cl.last_attend_split_event(), cl.last_event()));
  }
  const double wm = bench::median(wall), km = bench::median(kern);
  state.counters["wall_us"] = wm * 1e6;
  state.counters["kernel_us"] = km * 1e6;
  state.counters["host_overhead"] = wm / km - 1.0;
  using Kernel = opencl::AttendKernel;
  const Kernel ran = cl.last_attend_kernel();
  state.counters["kernel"] = ran == Kernel::nvidia_mma_sync ? 2 : ran == Kernel::short_context ? 1 : 0;
  state.SetLabel("Hq" + std::to_string(s.hq) + " Hk" + std::to_string(s.hk) + " D128 ctx" +
                 std::to_string(s.context) + " batch" + std::to_string(s.batch) + " k4v2_g128 " +
                 (device_io ? "device q/out" : "host q/out"));
}

void BM_CacheStep(benchmark::State& state, Shape s, bool device_io) {
  try {
    BM_CacheStep_body(state, s, device_io);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  bool gpu = false;
  try {
    g_backend = make_opencl_backend();
    gpu = static_cast<opencl::OpenCLBackend&>(*g_backend).caps().type != "cpu";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opencl_cache_step_bench: %s\n", e.what());
    return 1;
  }
  auto& cl = static_cast<opencl::OpenCLBackend&>(*g_backend);
  benchmark::AddCustomContext("device", cl.caps().device_name);
  benchmark::AddCustomContext("driver", cl.caps().driver_version);
  const std::vector<Shape> shapes = gpu ? std::vector<Shape>{{32, 8, 32768, 8}, {32, 8, 4096, 1},
                                                             {32, 8, 131072, 1}, {32, 32, 32768, 8}}
                                        : std::vector<Shape>{{32, 8, 2048, 2}};
  for (const Shape& s : shapes)
    for (const bool dev : {false, true}) {
      const std::string name = std::string("BM_CacheStep/") + (dev ? "device" : "host") + "/Hq" +
                               std::to_string(s.hq) + "_Hk" + std::to_string(s.hk) + "/ctx" +
                               std::to_string(s.context) + "/batch" + std::to_string(s.batch);
      benchmark::RegisterBenchmark(name.c_str(), BM_CacheStep, s, dev)
          ->UseManualTime()->Iterations(gpu ? 50 : 5)->Unit(benchmark::kMicrosecond);
    }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_backend.reset();
  return 0;
}
