// The public device API of include/kvarn_cl/device.hpp: listing, build check, and backends on
// library-chosen or caller-owned OpenCL objects.
#include <chrono>

#include "kvarn_cl/device.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/codec_program.hpp"
#include "opencl/device_discovery.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/matrix_units.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl {
namespace {

// The least a device must offer for the portable kernels (SPEC §6).
void check_minimum(const DeviceCapabilities& c) {
  std::string why;
  if (c.opencl_c_major < 1 || (c.opencl_c_major == 1 && c.opencl_c_minor < 2))
    why = "OpenCL C " + std::to_string(c.opencl_c_major) + "." + std::to_string(c.opencl_c_minor) +
          " (1.2 needed)";
  else if (c.max_work_group_size < 256)
    why = "work-groups of at most " + std::to_string(c.max_work_group_size) + " work-items (256 needed)";
  else if (c.local_mem_bytes < 32 * 1024)
    why = std::to_string(c.local_mem_bytes) + " bytes of local memory (32 KiB needed)";
  if (!why.empty())
    throw Unsupported("OpenCL device " + c.device_name + " (" + c.platform_name +
                      ") is not usable: " + why);
}

}  // namespace

std::vector<DeviceEntry> list_opencl_devices() {
  std::vector<DeviceEntry> out;
  for (const opencl::FoundDevice& d : opencl::find_devices()) out.push_back(d.entry);
  return out;
}

DeviceEntry default_opencl_device() { return opencl::select_device({}).entry; }

std::unique_ptr<Backend> make_opencl_backend(const DeviceSelector& selector) {
  const opencl::FoundDevice found = opencl::select_device(selector);
  check_minimum(found.entry.caps);
  return opencl::make_opencl_backend_on(found);
}

std::unique_ptr<Backend> make_opencl_backend(_cl_context* context, _cl_device_id* device,
                                             _cl_command_queue* queue) {
  if (context == nullptr || device == nullptr || queue == nullptr)
    throw InvalidArgument(std::string("make_opencl_backend: ") +
                          (context == nullptr ? "context" : device == nullptr ? "device" : "queue") +
                          " is null");
  const cl::Context ctx(context, true);
  const cl::Device dev(device, true);
  cl::CommandQueue q(queue, true);
  const bool in_order = opencl::cl_call("reading the caller's command queue", [&] {
    return (q.getInfo<CL_QUEUE_PROPERTIES>() & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) == 0;
  });
  if (!in_order)
    throw InvalidArgument("make_opencl_backend: queue is out-of-order; the backend needs an in-order queue");
  auto rt = opencl::DeviceRuntime::for_context(ctx, dev);
  check_minimum(rt->caps());
  return std::make_unique<opencl::OpenCLBackend>(std::move(rt), std::move(q));
}

std::unique_ptr<Buffer> wrap_opencl_buffer(_cl_mem* mem) {
  if (mem == nullptr) throw InvalidArgument("wrap_opencl_buffer: mem is null");
  cl::Buffer b(mem, true);
  const std::size_t bytes = opencl::cl_call("reading the size of a cl_mem",
                                            [&] { return b.getInfo<CL_MEM_SIZE>(); });
  return std::make_unique<opencl::ClBuffer>(std::move(b), bytes);
}

_cl_mem* opencl_mem(const Buffer& buffer) noexcept {
  const auto* b = dynamic_cast<const opencl::ClBuffer*>(&buffer);
  return b ? b->mem()() : nullptr;
}

KernelBuildReport try_build_kernels(int platform_index, int device_index) {
  KernelBuildReport report;
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&] {
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  };
  std::unique_ptr<Backend> backend;
  try {
    backend = make_opencl_backend(DeviceSelector{std::to_string(platform_index), std::to_string(device_index)});
  } catch (const Error& e) {
    report.message = e.what();
    return finish();
  }
  auto& cl_backend = static_cast<opencl::OpenCLBackend&>(*backend);
  std::vector<CodecParams> geometries;
  for (Preset p : all_presets()) geometries.push_back(CodecParams{p, 128, kDefaultSinkhornIters});
  geometries.push_back(CodecParams{Preset::k4v2_g128, 64, kDefaultSinkhornIters});
  geometries.push_back(CodecParams{Preset::k4v2_g128, 256, kDefaultSinkhornIters});
  int built = 0;
  for (const CodecParams& params : geometries) {
    try {
      cl_backend.quantize_tokens_per_item(params);  // builds the codec program of this geometry
      ++built;
    } catch (const KernelBuildError& e) {
      report.message = "kernel build failed for " + to_string(params.preset) + " head_dim " +
                       std::to_string(params.head_dim);
      report.build_log = e.build_log();
      return finish();
    } catch (const Error& e) {
      report.message = e.what();
      return finish();
    }
  }
  // The attention programs of the default geometry (GQA 4:1 and MHA), the fp16 baseline and the
  // row copies: a device that builds these runs every path of the cache.
  const CodecParams defaults{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
  std::vector<std::pair<std::string, opencl::ProgramSpec>> others;
  const opencl::MatrixUnits& mu = cl_backend.runtime().matrix_units();
  report.attention_variant = (mu.available ? "matrix units (" : "portable (") + mu.reason + ")";
  report.program_cache = cl_backend.runtime().disk_cache_state();
  for (int ratio : {1, 4}) {
    const int heads = opencl::attend_heads_per_group(ratio);
    if (mu.available)
      others.push_back({"matrix-unit fused attention (GQA " + std::to_string(ratio) + ":1)",
                        opencl::attend_records_mma_program(defaults, opencl::attend_mma_heads_per_group(ratio))});
    // The same programs attend() builds (GPU devices: the unrolled variant).
    others.push_back({"fused attention (GQA " + std::to_string(ratio) + ":1)",
                      opencl::attend_records_program(defaults, heads, cl_backend.caps().type == "gpu")});
    others.push_back({"fused short-context attention (GQA " + std::to_string(ratio) + ":1)",
                      opencl::attend_records_short_program(defaults, heads)});
    others.push_back({"fp16 attention (GQA " + std::to_string(ratio) + ":1)",
                      opencl::attend_fp16_program(defaults.head_dim, heads)});
  }
  others.push_back({"copy_rows", opencl::copy_rows_program()});
  for (const auto& [what, spec] : others) {
    try {
      cl_backend.runtime().program(spec);
      ++built;
    } catch (const KernelBuildError& e) {
      report.message = "kernel build failed for " + what;
      report.build_log = e.build_log();
      return finish();
    } catch (const Error& e) {
      report.message = e.what();
      return finish();
    }
  }
  report.ok = true;
  report.message = "built " + std::to_string(built) + " programs (codec kernels of " +
                   std::to_string(geometries.size()) + " geometries, attention, copies) on " +
                   cl_backend.caps().device_name;
  return finish();
}

}  // namespace kvarn_cl
