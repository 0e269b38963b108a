// OpenCL codec kernels on the default OpenCL device (KVARN_CL_PLATFORM / KVARN_CL_DEVICE choose):
//   BM_Quantize    tiles/s and ms per launch; includes the Llama-3-8B 32K-prompt case
//                  (65,536 K/V tile pairs = 32 layers x 8 KV heads x 256 tiles, k4v2_g128, D=128)
//   BM_Dequantize  batched record -> fp16 rows, GB/s counting record bytes read + fp16 bytes
//                  written, and that as a fraction of the copy bandwidth measured in this run
//   BM_QuantizeVariant (GPU only)  quantize kernel build variants launched directly (tokens per
//                  work-item, fp16-resident M) with their register counts where NVIDIA's
//                  compiler reports them: the data behind the backend's choices
// Kernel time comes from OpenCL event profiling (the launch alone, not the host calls around it);
// every counter is computed from the median over the benchmark's iterations after a warm-up.
// On a CPU OpenCL device (PoCL) the sizes shrink automatically so that a run finishes; the
// `scaled` counter is 1 there and the label says so.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "common/opencl_timing.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/device.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/opencl_backend.hpp"
#include "opencl/opencl_backend_tuning.hpp"
#include "opencl/program_table.hpp"

namespace {

using namespace kvarn_cl;

struct BenchEnv {
  std::unique_ptr<opencl::OpenCLBackend> backend;
  bool gpu = false;
  double copy_gbs = 0;
};
BenchEnv* g_env = nullptr;  // set by main for the run, released before exit (no global cl:: objects)

opencl::internal::OpenCLBackendTuning tuning() {
  return opencl::internal::OpenCLBackendTuning(*g_env->backend);
}

// The codec program of a geometry as the backend builds it, with Q_RT = tokens_per_item.
opencl::ProgramSpec codec_spec(const CodecParams& params, int tokens_per_item) {
  opencl::ProgramArgs args;
  args.params = params;
  args.tokens_per_item = tokens_per_item;
  return tuning().program_spec(opencl::Program::codec, args);
}

constexpr std::size_t kDistinctTiles = 128;  // real data; larger batches repeat it on the device

// Fills `dst` with copies of the first `unit` bytes of `src`, on the device.
void replicate(Buffer& src, std::size_t unit, Buffer& dst, std::size_t total) {
  for (std::size_t at = 0; at < total; at += unit)
    g_env->backend->copy(src, 0, dst, at, std::min(unit, total - at));
}

struct Batch {
  std::unique_ptr<Buffer> k, v;
};

// tiles x G rotated fp16 rows per K and V: N(0,1) with outlier channels, rotated on the host.
Batch make_rows(const CodecParams& params, std::size_t tiles) {
  const int D = params.head_dim;
  const std::size_t unit_rows = std::min(tiles, kDistinctTiles) * std::size_t(params.group());
  std::vector<float> x(unit_rows * std::size_t(D));
  std::uint32_t s = 12345;
  for (std::size_t i = 0; i < x.size(); ++i) {  // cheap deterministic noise; the codec cost does not depend on it
    s = s * 1664525u + 1013904223u;
    x[i] = (float(s >> 8) / 16777216.0f - 0.5f) * ((i % std::size_t(D)) == 3 ? 40.0f : 2.0f);
  }
  std::vector<half_bits> h(x.size());
  rotate_rows(x.data(), h.data(), unit_rows, D);
  auto& b = *g_env->backend;
  auto unit = b.allocate(h.size() * 2);
  b.write(*unit, 0, h.data(), h.size() * 2);
  const std::size_t total = tiles * std::size_t(params.group()) * std::size_t(D) * 2;
  Batch out{b.allocate(total), b.allocate(total)};
  replicate(*unit, h.size() * 2, *out.k, total);
  replicate(*unit, h.size() * 2, *out.v, total);
  b.finish();
  return out;
}

CodecParams params_of(const benchmark::State& state) {
  return CodecParams{all_presets()[std::size_t(state.range(0))], int(state.range(1)), kDefaultSinkhornIters};
}

std::string label(const CodecParams& p, std::size_t tiles, bool scaled) {
  return to_string(p.preset) + " D=" + std::to_string(p.head_dim) + " tiles=" + std::to_string(tiles) +
         " on " + g_env->backend->caps().device_name + " (driver " + g_env->backend->caps().driver_version +
         ")" + (scaled ? " [scaled down for a CPU device]" : "");
}

void BM_Quantize(benchmark::State& state) {
  const CodecParams params = params_of(state);
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tiles = std::size_t(state.range(2));
  auto& b = *g_env->backend;
  Batch rows = make_rows(params, tiles);
  auto records = b.allocate(tiles * l.bytes);
  std::vector<QuantizeJob> jobs(tiles);
  for (std::size_t i = 0; i < tiles; ++i)
    jobs[i] = {std::uint32_t(i * std::size_t(l.group)), std::uint32_t(i)};
  b.quantize(params, *rows.k, *rows.v, jobs, *records);  // warm-up (and program build)
  std::vector<double> seconds;
  for (auto _ : state) {
    b.quantize(params, *rows.k, *rows.v, jobs, *records);
    seconds.push_back(bench::event_seconds(tuning().last_event()));
    state.SetIterationTime(seconds.back());
  }
  const double t = bench::median(seconds);
  // What the compiler made of the kernel: private_bytes > 0 on a GPU means values spilled to
  // (off-chip) stack memory; kernel_max_wg below the work-group means too many registers.
  const int rt = b.quantize_tokens_per_item(params);
  const cl::Device& dev = tuning().device();
  cl::Kernel& kern = tuning().kernel(codec_spec(params, rt), "kvarn_quantize");
  state.counters["private_bytes"] = double(kern.getWorkGroupInfo<CL_KERNEL_PRIVATE_MEM_SIZE>(dev));
  state.counters["local_bytes"] = double(kern.getWorkGroupInfo<CL_KERNEL_LOCAL_MEM_SIZE>(dev));
  state.counters["kernel_max_wg"] = double(kern.getWorkGroupInfo<CL_KERNEL_WORK_GROUP_SIZE>(dev));
  state.counters["work_group"] = double(opencl::quantize_work_group(params, rt));
  state.counters["unroll"] = opencl::unrolls_loops(b.caps()) ? 1 : 0;
  state.counters["ms_per_launch"] = t * 1e3;
  state.counters["tile_pairs_per_s"] = double(tiles) / t;
  state.counters["scaled"] = g_env->gpu ? 0 : 1;
  state.SetLabel(label(params, tiles, !g_env->gpu));
}

bool has_nv_compiler_options() {
  const std::string ext = tuning().device().getInfo<CL_DEVICE_EXTENSIONS>();
  return ext.find("cl_nv_compiler_options") != std::string::npos;
}

// Registers per work-item of `kernel_name` as NVIDIA's PTX assembler reports them with
// -cl-nv-verbose (a second build of the same program); -1 where that is not available.
double nv_registers(const opencl::ProgramSpec& spec, const std::string& kernel_name) {
  if (!has_nv_compiler_options()) return -1;
  opencl::ProgramSpec verbose = spec;
  verbose.options += " -cl-nv-verbose";
  auto& b = *g_env->backend;
  const std::string log =
      b.runtime().program(verbose).getBuildInfo<CL_PROGRAM_BUILD_LOG>(b.runtime().device());
  const std::size_t at = log.find("'" + kernel_name + "'");
  if (at == std::string::npos) return -1;
  const std::size_t used = log.find("Used ", at);
  if (used == std::string::npos) return -1;
  return std::atof(log.c_str() + used + 5);
}

// The quantize kernel built with a chosen Q_RT (tokens per work-item: 4, 8, 16 or 32), launched
// directly: the data for choosing the default (quantize_tokens_per_item). Skipped where the variant cannot run
// (work-group above the kernel's limit). No register cap variant: -cl-nv-maxrregcount=128 gives
// the same register count and time as the default on an H100 (driver 580).
void BM_QuantizeVariant(benchmark::State& state) {
  const CodecParams params = params_of(state);
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t tiles = std::size_t(state.range(2));
  const int rt = int(state.range(3));
  auto& b = *g_env->backend;
  opencl::internal::OpenCLBackendTuning tune(b);
  const opencl::ProgramSpec spec = codec_spec(params, rt);
  cl::Kernel& kern = tune.kernel(spec, "kvarn_quantize");
  const std::size_t wg = std::size_t(opencl::quantize_work_group(params, rt));
  const std::size_t kwg = kern.getWorkGroupInfo<CL_KERNEL_WORK_GROUP_SIZE>(tune.device());
  if (wg > kwg) {
    const std::string why = "work-group " + std::to_string(wg) + " above the kernel's limit " +
                            std::to_string(kwg) + " (registers " +
                            std::to_string(int(nv_registers(spec, "kvarn_quantize"))) + ")";
    state.SkipWithError(why.c_str());
    return;
  }
  Batch rows = make_rows(params, tiles);
  auto records = b.allocate(tiles * l.bytes);
  std::vector<QuantizeJob> jobs(tiles);
  for (std::size_t i = 0; i < tiles; ++i)
    jobs[i] = {std::uint32_t(i * std::size_t(l.group)), std::uint32_t(i)};
  cl::Buffer job_buf = tune.upload(jobs.data(), jobs.size() * sizeof(QuantizeJob), "uploading jobs");
  const std::uint32_t none = 0xFFFFFFFFu;
  cl::Buffer status(tune.context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof none,
                    const_cast<std::uint32_t*>(&none));
  kern.setArg(0, opencl::cl_buffer(*rows.k, "k"));
  kern.setArg(1, opencl::cl_buffer(*rows.v, "v"));
  kern.setArg(2, job_buf);
  kern.setArg(3, opencl::cl_buffer(*records, "records"));
  kern.setArg(4, cl_int(params.sinkhorn_iters));
  kern.setArg(5, status);
  kern.setArg(6, cl_uint(0));  // status word
  const cl::NDRange global(wg * tiles, 2), local(wg, 1);
  tune.launch(kern, global, local, "warm-up");
  b.finish();
  std::vector<double> seconds;
  for (auto _ : state) {
    tune.launch(kern, global, local, "quantize variant");
    b.finish();
    seconds.push_back(bench::event_seconds(tune.last_event()));
    state.SetIterationTime(seconds.back());
  }
  const double t = bench::median(seconds);
  state.counters["rt"] = rt;
  state.counters["registers"] = nv_registers(spec, "kvarn_quantize");
  state.counters["private_bytes"] = double(kern.getWorkGroupInfo<CL_KERNEL_PRIVATE_MEM_SIZE>(tune.device()));
  state.counters["local_bytes"] = double(kern.getWorkGroupInfo<CL_KERNEL_LOCAL_MEM_SIZE>(tune.device()));
  state.counters["kernel_max_wg"] = double(kwg);
  state.counters["work_group"] = double(wg);
  state.counters["ms_per_launch"] = t * 1e3;
  state.counters["tile_pairs_per_s"] = double(tiles) / t;
  state.SetLabel(label(params, tiles, !g_env->gpu));
}

void BM_Dequantize(benchmark::State& state) {
  const CodecParams params = params_of(state);
  const RecordLayout l = RecordLayout::make(params);
  const std::size_t n = std::size_t(state.range(2));
  const Frame frame = state.range(3) ? Frame::original : Frame::rotated;
  auto& b = *g_env->backend;
  // Real records for a few distinct tiles, repeated over the pool on the device.
  const std::size_t distinct = std::min(n, kDistinctTiles);
  Batch rows = make_rows(params, distinct);
  auto unit = b.allocate(distinct * l.bytes);
  std::vector<QuantizeJob> jobs(distinct);
  for (std::size_t i = 0; i < distinct; ++i)
    jobs[i] = {std::uint32_t(i * std::size_t(l.group)), std::uint32_t(i)};
  b.quantize(params, *rows.k, *rows.v, jobs, *unit);
  auto pool = b.allocate(n * l.bytes);
  replicate(*unit, distinct * l.bytes, *pool, n * l.bytes);
  const std::size_t out_bytes = n * std::size_t(l.group) * std::size_t(l.head_dim) * 2;
  auto k_out = b.allocate(out_bytes);
  auto v_out = b.allocate(out_bytes);
  std::vector<std::uint32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0u);
  b.dequantize(params, *pool, ids, frame, *k_out, *v_out);  // warm-up
  std::vector<double> seconds;
  for (auto _ : state) {
    b.dequantize(params, *pool, ids, frame, *k_out, *v_out);
    seconds.push_back(bench::event_seconds(tuning().last_event()));
    state.SetIterationTime(seconds.back());
  }
  const double t = bench::median(seconds);
  {
    cl::Kernel& kern = tuning().kernel(codec_spec(params, b.quantize_tokens_per_item(params)),
                                       frame == Frame::rotated ? "kvarn_dequantize_rotated"
                                                               : "kvarn_dequantize_original");
    state.counters["private_bytes"] =
        double(kern.getWorkGroupInfo<CL_KERNEL_PRIVATE_MEM_SIZE>(tuning().device()));
  }
  // Bytes moved: every record read once (codes + scale vectors) + the fp16 K and V rows written.
  const double bytes = double(n) * double(l.bytes) + 2.0 * double(out_bytes);
  state.counters["GBps"] = bytes / t * 1e-9;
  state.counters["copy_GBps"] = g_env->copy_gbs;
  state.counters["fraction_of_copy"] = bytes / t * 1e-9 / g_env->copy_gbs;
  state.counters["GB_moved"] = bytes * 1e-9;
  state.counters["scaled"] = g_env->gpu ? 0 : 1;
  state.SetLabel(label(params, n, !g_env->gpu) + (frame == Frame::original ? " original frame" : " rotated frame"));
}

long preset_index(Preset p) {
  const auto& all = all_presets();
  return long(std::find(all.begin(), all.end(), p) - all.begin());
}

void register_benchmarks(bool gpu) {
  const long k4v2 = preset_index(Preset::k4v2_g128), k4v4 = preset_index(Preset::k4v4_g128);
  auto quantize = [&](long preset, long d, long tiles) {
    benchmark::RegisterBenchmark("BM_Quantize", BM_Quantize)
        ->Args({preset, d, tiles})->UseManualTime()->Unit(benchmark::kMillisecond)
        ->Iterations(gpu ? 20 : 3);
  };
  auto dequantize = [&](long preset, long d, long records, long original) {
    benchmark::RegisterBenchmark("BM_Dequantize", BM_Dequantize)
        ->Args({preset, d, records, original})->UseManualTime()->Unit(benchmark::kMicrosecond)
        ->Iterations(gpu ? 50 : 5);
  };
  if (gpu) {
    quantize(k4v2, 128, 1024);
    quantize(k4v2, 128, 65536);  // Llama-3-8B, 32K prompt: 32 layers x 8 KV heads x 256 tiles
    quantize(k4v4, 128, 65536);
    quantize(k4v2, 64, 8192);
    quantize(k4v2, 256, 8192);
    auto variant = [&](long d, long tiles, long rt) {
      benchmark::RegisterBenchmark("BM_QuantizeVariant", BM_QuantizeVariant)
          ->Args({k4v2, d, tiles, rt})->UseManualTime()
          ->Unit(benchmark::kMillisecond)->Iterations(10);
    };
    // Q_RT 8 is the default build
    for (long rt : {8L, 4L, 16L}) variant(128, 16384, rt);
    for (long rt : {8L, 16L, 32L}) variant(256, 4096, rt);
    // >= 1 GB moved per launch: 16,384 k4v2 D=128 records read (226 MB) + 1.07 GB fp16 written
    dequantize(k4v2, 128, 16384, 0);
    dequantize(k4v2, 128, 16384, 1);
    dequantize(k4v4, 128, 16384, 0);
    dequantize(k4v2, 256, 8192, 0);
  } else {
    quantize(k4v2, 128, 16);
    quantize(k4v2, 128, 64);
    dequantize(k4v2, 128, 256, 0);
    dequantize(k4v2, 128, 256, 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  BenchEnv env;
  try {
    std::unique_ptr<Backend> b = make_opencl_backend();
    env.backend.reset(static_cast<opencl::OpenCLBackend*>(b.release()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "opencl_codec_bench: no OpenCL device: %s\n", e.what());
    return 1;
  }
  env.gpu = env.backend->caps().type != "cpu";
  opencl::internal::OpenCLBackendTuning t(*env.backend);
  env.copy_gbs = bench::measure_copy_bandwidth_gbs(t.context(), t.queue(),
                                                   env.gpu ? (std::size_t(1) << 30) : (std::size_t(64) << 20));
  g_env = &env;
  benchmark::AddCustomContext("device", env.backend->caps().device_name);
  benchmark::AddCustomContext("driver", env.backend->caps().driver_version);
  benchmark::AddCustomContext("copy_GBps_read_plus_write", std::to_string(env.copy_gbs));
  register_benchmarks(env.gpu);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_env = nullptr;
  return 0;
}
