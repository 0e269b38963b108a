// What an engine's decode step costs through the public API: a 32-layer model with Llama-3-8B
// attention heads (Hq 32, Hk 8, D 128), every sequence at the same context, one new token per
// sequence per step. Per step: begin_step, then for every layer DecodeStep::append (the token's K
// and V from device buffers, f16) and DecodeStep::attend (q f32 and out f16 in device buffers),
// then finish(): the step's one synchronization. Nothing but the step is timed (the prefill that
// builds the context is not).
//
//   BM_ModelStep/<mode>/batchB/ctxC   mode kvarn: k4v2_g128 records; fp16: the same cache with
//                                     every token kept fp16 (sink_tokens = the whole context),
//                                     our fp16 cache mode through the same kernels
//   BM_ModelStep/capacity<N>GB/...    the largest batch whose cache fits N GB at 32K context
//                                     (KVARN_BENCH_KV_BUDGET_GB, default 60), and its tokens/s
//
// Counters (medians over the timed steps):
//   wall_us           wall-clock of one whole step (begin_step .. finish returned)
//   kernel_us         sum of the event times of every kernel the step launched
//   span_us           first kernel start to last kernel end (device busy + gaps)
//   host_us_per_layer (wall - kernel sum) / 32: what the host adds per layer beyond the kernels
//   wall_per_kernel   wall / kernel sum (target <= 1.1)
//   append_host_us / attend_host_us   host time of one DecodeStep::append / attend call
//   floor_us          bytes the step's attention reads / the copy bandwidth measured in the same
//                     run (read + write; a read-only kernel reads about as fast, GPU.md): the
//                     bandwidth floor of the step
//   of_floor          floor_us / kernel_us
//   tokens_per_s      batch / wall (sequences advanced by one token per second)
//   cache_gb          every byte the cache holds (memory_report().total())
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/opencl_timing.hpp"
#include "kvarn_cl/device.hpp"
#include "kvarn_cl/kvarn_cl.hpp"
#include "opencl/opencl_backend.hpp"
#include "opencl/opencl_backend_tuning.hpp"

namespace {

using namespace kvarn_cl;
using Clock = std::chrono::steady_clock;

constexpr int kLayers = 32, kHq = 32, kHk = 8, kD = 128;
constexpr int kWarmup = 3;

struct ModelShape {
  int batch;
  int context;
  bool fp16;  // our fp16 cache mode (no records)
  int recent = kDefaultRecentTokens;  // CacheConfig::recent_tokens (the library default unless 0)
};

struct Run {
  std::shared_ptr<Backend> backend;
  double read_gbs = 0;  // read bandwidth: the measured copy bandwidth (GPU.md: reads run as fast)
  bool profiling = true;  // false: a queue without CL_QUEUE_PROFILING_ENABLE (wall only)
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Deterministic filler values (xorshift), fp16 in [-2, 2): the content does not matter to the
// timing, only that it is finite and quantizable.
std::vector<half_bits> filler(std::size_t n, std::uint32_t seed) {
  std::vector<half_bits> out(n);
  std::uint32_t x = seed * 2654435761u + 1u;
  for (half_bits& h : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    h = float_to_half(float(x & 0xFFFF) / 16384.0f - 2.0f);
  }
  return out;
}

CacheConfig model_config(std::shared_ptr<Backend> be, ModelShape s, int extra_tokens) {
  CacheConfig c;
  c.codec = CodecParams{Preset::k4v2_g128, kD, kDefaultSinkhornIters};
  c.num_layers = kLayers;
  c.num_kv_heads = kHk;
  c.max_sequences = s.batch;
  c.max_tokens_per_sequence = s.context + extra_tokens;
  if (s.fp16) c.sink_tokens = c.max_tokens_per_sequence;  // every token stays fp16
  c.recent_tokens = s.recent;
  c.backend = std::move(be);
  return c;
}

// Bytes a step's attention reads: the live records and fp16 rows of every layer.
double step_read_bytes(const MemoryReport& m, const KVCache& cache) {
  const double rb = double(cache.layout(0).bytes), G = cache.layout(0).group;
  const double quantized_tokens = rb > 0 ? double(m.records_in_use) / rb / kHk * G : 0;
  const double fp16_tokens = double(m.live_tokens) - quantized_tokens;
  return double(m.records_in_use) + fp16_tokens * kHk * kD * 2 * 2;
}

void model_step(benchmark::State& state, const Run& run, ModelShape s) {
  Backend& be = *run.backend;
  auto& ocl = static_cast<opencl::OpenCLBackend&>(be);
  // Only the profiled run logs kernel events (the tuning makes the backend ask for an event per
  // launch); the queue without profiling runs as the library does by itself, with none.
  std::optional<opencl::internal::OpenCLBackendTuning> tune;
  if (run.profiling) tune.emplace(ocl);
  const int steps = int(state.max_iterations) + kWarmup;
  KVCache cache(model_config(run.backend, s, steps + 8));
  std::vector<SeqId> ids;
  for (int b = 0; b < s.batch; ++b) ids.push_back(cache.add_sequence());

  // Prefill from device rows, in chunks of at most 64K tokens over the batch (few calls: each
  // plain append checks its device rows with a read-back).
  const int chunk = std::max(1, std::min(s.context, 65536 / s.batch));
  const std::size_t chunk_rows = std::size_t(s.batch) * std::size_t(chunk) * kHk;
  auto pk = be.allocate(chunk_rows * kD * 2), pv = be.allocate(chunk_rows * kD * 2);
  be.write(*pk, 0, filler(chunk_rows * kD, 1).data(), chunk_rows * kD * 2);
  be.write(*pv, 0, filler(chunk_rows * kD, 2).data(), chunk_rows * kD * 2);
  for (int done = 0; done < s.context;) {
    const int n = std::min(chunk, s.context - done);
    const std::vector<int> counts(std::size_t(s.batch), n);
    for (int l = 0; l < kLayers; ++l) cache.append(l, ids, counts, *pk, *pv, ElementType::f16, AppendMode::commit);
    done += n;
  }
  be.finish();
  pk.reset();
  pv.reset();

  // The step's device-resident inputs and outputs (an engine's activations).
  const std::size_t kv_values = std::size_t(s.batch) * kHk * kD, q_values = std::size_t(s.batch) * kHq * kD;
  auto kb = be.allocate(kv_values * 2), vb = be.allocate(kv_values * 2);
  auto qb = be.allocate(q_values * 4), ob = be.allocate(q_values * 2);
  be.write(*kb, 0, filler(kv_values, 3).data(), kv_values * 2);
  be.write(*vb, 0, filler(kv_values, 4).data(), kv_values * 2);
  {
    std::vector<float> q(q_values);
    const std::vector<half_bits> h = filler(q_values, 5);
    for (std::size_t i = 0; i < q_values; ++i) q[i] = half_to_float(h[i]);
    be.write(*qb, 0, q.data(), q_values * 4);
  }

  std::vector<double> append_host, attend_host;
  auto one_step = [&](bool record) {
    DecodeStep st = cache.begin_step(ids);
    for (int l = 0; l < kLayers; ++l) {
      auto t0 = Clock::now();
      st.append(l, *kb, *vb, ElementType::f16);
      if (record) append_host.push_back(seconds_since(t0));
      t0 = Clock::now();
      st.attend(l, kHq, *qb, *ob, ElementType::f16);
      if (record) attend_host.push_back(seconds_since(t0));
    }
    st.finish();
  };
  for (int i = 0; i < kWarmup; ++i) one_step(false);

  std::vector<double> wall, kernels, spans;
  std::vector<cl::Event> events;
  for (auto _ : state) {
    events.clear();
    if (tune) tune->log_kernel_events(&events);
    const auto t0 = Clock::now();
    one_step(true);
    const double w = seconds_since(t0);
    if (tune) tune->log_kernel_events(nullptr);
    state.SetIterationTime(w);
    wall.push_back(w);
    double sum = 0;
    for (const cl::Event& e : events) sum += bench::event_seconds(e);
    kernels.push_back(sum);
    spans.push_back(events.empty() ? 0.0 : bench::span_seconds(events.front(), events.back()));
  }
  const MemoryReport m = cache.memory_report();
  const double wm = bench::median(wall), km = bench::median(kernels);
  const double floor_s = step_read_bytes(m, cache) / (run.read_gbs * 1e9);
  state.counters["wall_us"] = wm * 1e6;
  state.counters["kernel_us"] = km * 1e6;
  state.counters["span_us"] = bench::median(spans) * 1e6;
  state.counters["host_us_per_layer"] = (wm - km) / kLayers * 1e6;
  state.counters["wall_per_kernel"] = km > 0 ? wm / km : 0;
  if (!run.profiling) {
    // No kernel times on this queue: only what the caller waits for.
    for (const char* c : {"kernel_us", "span_us", "host_us_per_layer", "wall_per_kernel"}) state.counters.erase(c);
  }
  state.counters["append_host_us"] = bench::median(append_host) * 1e6;
  state.counters["attend_host_us"] = bench::median(attend_host) * 1e6;
  state.counters["kernels_per_step"] = double(events.size());
  state.counters["floor_us"] = floor_s * 1e6;
  state.counters["of_floor"] = km > 0 ? floor_s / km : 0;
  state.counters["tokens_per_s"] = s.batch / wm;
  state.counters["cache_gb"] = double(m.total()) / 1e9;
  state.counters["batch"] = s.batch;
  state.counters["context"] = s.context;
  state.SetLabel(std::string(s.fp16 ? "fp16 cache" : "k4v2_g128, recent " + std::to_string(s.recent)) +
                 ", 32 layers, Hq 32 / Hk 8, D 128" +
                 (run.profiling ? "" : ", queue without profiling"));
}

void BM_ModelStep(benchmark::State& state, const Run* run, ModelShape s) {
  try {
    model_step(state, *run, s);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

// Bytes one sequence of a cache at `context` tokens costs (the report of a one-sequence cache,
// workspaces included, so a slight overestimate): the capacity view's unit.
std::size_t bytes_per_sequence(std::shared_ptr<Backend> be, int context, bool fp16) {
  CacheConfig c = model_config(std::move(be), {1, context, fp16}, 128);
  KVCache cache(c);
  return cache.memory_report().total();
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Run run;
  try {
    run.backend = make_opencl_backend();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opencl_model_step_bench: %s\n", e.what());
    return 1;
  }
  auto& cl = static_cast<opencl::OpenCLBackend&>(*run.backend);
  const bool gpu = cl.caps().type != "cpu";
  {
    opencl::internal::OpenCLBackendTuning tune(cl);
    const double copy = bench::measure_copy_bandwidth_gbs(tune.context(), tune.queue(), std::size_t(1) << (gpu ? 30 : 26));
    run.read_gbs = copy;
    benchmark::AddCustomContext("copy_gbs", std::to_string(copy));
  }
  benchmark::AddCustomContext("device", cl.caps().device_name);
  benchmark::AddCustomContext("driver", cl.caps().driver_version);
  const int iterations = gpu ? 20 : 3;
  std::vector<ModelShape> shapes;
  if (gpu) {
    // Batch 64 at 32K is the capacity view's neighbour (65 sequences at 60 GB) and 64 x 128K does
    // not fit: both left to it. Registered in order of importance (a run cut short keeps the
    // first): the KVarN grid, the capacity view, the queue without profiling, our fp16 mode.
    for (int ctx : {1024, 4096, 32768, 131072})
      for (int batch : {1, 8, 64})
        if (!(batch == 64 && ctx >= 32768)) shapes.push_back({batch, ctx, false});
  } else {
    shapes.push_back({2, 1024, false});
    shapes.push_back({2, 1024, true});
  }
  for (const ModelShape& s : shapes) {
    const std::string name = std::string("BM_ModelStep/") + (s.fp16 ? "fp16" : "kvarn") + "/batch" +
                             std::to_string(s.batch) + "/ctx" + std::to_string(s.context);
    benchmark::RegisterBenchmark(name.c_str(), BM_ModelStep, &run, s)
        ->UseManualTime()->Iterations(iterations)->Unit(benchmark::kMicrosecond);
  }
  // The capacity view: the largest batch whose KVarN cache fits the budget at 32K (PyTorch's fp16
  // capacity is torch_model_step_bench.py's).
  if (gpu) {
    const char* env = std::getenv("KVARN_BENCH_KV_BUDGET_GB");
    const double budget_gb = env ? std::atof(env) : 60.0;
    try {
      const std::size_t per_seq = bytes_per_sequence(run.backend, 32768, false);
      const int batch = int(budget_gb * 1e9 / double(per_seq));
      if (batch >= 1) {
        const std::string name = "BM_ModelStep/capacity" + std::to_string(int(budget_gb)) + "GB/kvarn/batch" +
                                 std::to_string(batch) + "/ctx32768";
        benchmark::RegisterBenchmark(name.c_str(), BM_ModelStep, &run, ModelShape{batch, 32768, false})
            ->UseManualTime()->Iterations(10)->Unit(benchmark::kMicrosecond);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "capacity view: %s\n", e.what());
    }
  }
  // The same steps on a queue without CL_QUEUE_PROFILING_ENABLE (the library's own queues have it;
  // an engine's may not): what event profiling adds to the host's enqueue cost.
  Run plain;
  if (gpu) {
    opencl::internal::OpenCLBackendTuning tune(cl);
    cl::CommandQueue queue(tune.context(), tune.device(), 0);
    plain.backend = make_opencl_backend(tune.context()(), tune.device()(), queue());
    plain.read_gbs = run.read_gbs;
    plain.profiling = false;
    for (ModelShape s : {ModelShape{1, 1024, false}, ModelShape{1, 4096, false}, ModelShape{8, 32768, false}}) {
      const std::string name = "BM_ModelStep/no_profiling/kvarn/batch" + std::to_string(s.batch) + "/ctx" +
                               std::to_string(s.context);
      benchmark::RegisterBenchmark(name.c_str(), BM_ModelStep, &plain, s)
          ->UseManualTime()->Iterations(iterations)->Unit(benchmark::kMicrosecond);
    }
  }
  // The default's recent-token window off (recent_tokens 0): with the grid's rows of the same
  // shape, what the default window costs per step (BM_ModelStep/kvarn_no_window/...).
  {
    const ModelShape gpu_shapes[] = {{1, 1024, false, 0}, {1, 4096, false, 0}, {8, 4096, false, 0}, {8, 32768, false, 0}};
    const ModelShape cpu_shapes[] = {{2, 1024, false, 0}};
    auto add = [&](const ModelShape& s) {
      const std::string name = "BM_ModelStep/kvarn_no_window/batch" + std::to_string(s.batch) + "/ctx" +
                               std::to_string(s.context);
      benchmark::RegisterBenchmark(name.c_str(), BM_ModelStep, &run, s)
          ->UseManualTime()->Iterations(iterations)->Unit(benchmark::kMicrosecond);
    };
    if (gpu)
      for (const ModelShape& s : gpu_shapes) add(s);
    else
      for (const ModelShape& s : cpu_shapes) add(s);
  }
  // Our fp16 cache mode, at the shapes where its prefill is cheap.
  if (gpu)
    for (ModelShape s : {ModelShape{1, 1024, true}, ModelShape{1, 4096, true}, ModelShape{8, 4096, true}}) {
      const std::string name = "BM_ModelStep/fp16/batch" + std::to_string(s.batch) + "/ctx" + std::to_string(s.context);
      benchmark::RegisterBenchmark(name.c_str(), BM_ModelStep, &run, s)
          ->UseManualTime()->Iterations(iterations)->Unit(benchmark::kMicrosecond);
    }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
