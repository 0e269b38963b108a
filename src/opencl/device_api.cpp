// The public device API of include/kvarn_cl/device.hpp: listing, build check, and backends on
// library-chosen or caller-owned OpenCL objects.
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/device_acceptance.hpp"
#include "opencl/device_discovery.hpp"
#include "opencl/kernel_variants.hpp"
#include "opencl/nvidia_mma_sync.hpp"
#include "opencl/opencl_backend.hpp"
#include "opencl/program_table.hpp"

namespace kvarn_cl {
namespace {

// The least a device must offer for the portable kernels: work-groups of 128 items (the
// short-context attention kernel; the launch descriptors fit every other kernel to the device,
// program_table.hpp) and the local memory their smallest plans need (local_memory_floor: about
// 16 KiB; SPEC §6's 32 KiB is what the kernels were tuned for).
void check_minimum(const DeviceCapabilities& c) {
  std::string why;
  if (c.opencl_c_major < 1 || (c.opencl_c_major == 1 && c.opencl_c_minor < 2))
    why = "OpenCL C " + std::to_string(c.opencl_c_major) + "." + std::to_string(c.opencl_c_minor) +
          " (1.2 needed)";
  else if (c.max_work_group_size < 128)
    why = "work-groups of at most " + std::to_string(c.max_work_group_size) +
          " work-items (128 needed)";
  else if (c.local_mem_bytes < opencl::local_memory_floor())
    why = std::to_string(c.local_mem_bytes) + " bytes of local memory (" +
          std::to_string(opencl::local_memory_floor()) + " needed)";
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
                          (context == nullptr  ? "context"
                           : device == nullptr ? "device"
                                               : "queue") +
                          " is null");
  const cl::Context ctx(context, true);
  const cl::Device dev(device, true);
  cl::CommandQueue q(queue, true);
  const bool in_order = opencl::cl_call("reading the caller's command queue", [&] {
    return (q.getInfo<CL_QUEUE_PROPERTIES>() & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) == 0;
  });
  if (!in_order)
    throw InvalidArgument(
        "make_opencl_backend: queue is out-of-order; the backend needs an in-order queue");
  auto rt = opencl::DeviceRuntime::for_context(ctx, dev);
  check_minimum(rt->caps());
  return std::make_unique<opencl::OpenCLBackend>(std::move(rt), std::move(q));
}

std::unique_ptr<Buffer> wrap_opencl_buffer(_cl_mem* mem) {
  if (mem == nullptr) throw InvalidArgument("wrap_opencl_buffer: mem is null");
  cl::Buffer b(mem, true);
  const std::size_t bytes =
      opencl::cl_call("reading the size of a cl_mem", [&] { return b.getInfo<CL_MEM_SIZE>(); });
  return std::make_unique<opencl::ClBuffer>(std::move(b), bytes);
}

_cl_mem* opencl_mem(const Buffer& buffer) noexcept {
  const auto* b = dynamic_cast<const opencl::ClBuffer*>(&buffer);
  return b ? b->mem()() : nullptr;
}

namespace {

// One build of the check: what it is, and the build itself (throws what the build throws).
struct CheckedBuild {
  std::string what;
  std::function<void()> build;
};

// Every program of the table with the arguments the backend builds it with on this device: the
// codec programs of every preset at head_dim 128 and of the default preset at 64 and 256, the
// fused kernels the launch policy can pick here for GQA 4:1 and MHA at the default geometry, the
// fp16 attention, the row copies and checks. The fused kernels come from their launch descriptors
// (attend_descriptors(), attention_program.cpp): a new one needs nothing here. Every other program
// needs a case saying how the check builds it. The switch has a default (so that the fused
// programs need no case), so the compiler no longer says so: a program without a case fails the
// check at run time, naming it (`kvarn-cl info`: "kernels: build FAILED: ... no case for ...").
std::vector<CheckedBuild> builds_to_check(opencl::OpenCLBackend& backend,
                                          const std::vector<CodecParams>& geometries) {
  using opencl::Program;
  const CodecParams defaults{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
  const bool has_mma_sync = backend.runtime().nvidia_mma_sync().available;
  auto program_build = [&](Program p, opencl::ProgramArgs args) {
    return [&backend, p, args] {
      backend.runtime().program(opencl::program_spec(p, args, backend.runtime()));
    };
  };
  auto gqa = [](int ratio) { return " (GQA " + std::to_string(ratio) + ":1)"; };
  auto is_fused_attend = [](Program p) {
    for (const opencl::AttendDescriptor& d : opencl::attend_descriptors())
      if (d.program == p) return true;
    return false;
  };
  std::vector<CheckedBuild> out;
  for (const opencl::ProgramDef& def : opencl::program_table()) {
    if (is_fused_attend(def.program)) continue;  // those the policy can pick here: after this loop
    switch (def.program) {
      case Program::rotate:
        for (int d : {64, 128, 256}) {
          opencl::ProgramArgs args;
          args.params.head_dim = d;
          out.push_back({std::string(def.name) + " head_dim " + std::to_string(d),
                         program_build(def.program, args)});
        }
        break;
      case Program::codec:
        for (const CodecParams& g : geometries)  // the backend picks Q_RT while it builds
          out.push_back({std::string(def.name) + " " + to_string(g.preset) + " head_dim " +
                             std::to_string(g.head_dim),
                         [&backend, g] { backend.quantize_tokens_per_item(g); }});
        break;
      case Program::attend_fp16:
        for (int ratio : {1, 4}) {
          opencl::ProgramArgs args;
          args.params.head_dim = defaults.head_dim;
          args.heads_per_group = opencl::attend_fp16_heads_per_group(ratio, defaults.head_dim);
          out.push_back({def.name + gqa(ratio), program_build(def.program, args)});
        }
        break;
      case Program::copy_rows:
      case Program::check_rows:
        out.push_back({def.name, program_build(def.program, {})});
        break;
      case Program::mma_probe:  // built by the nvidia_mma_sync capability check
      case Program::mma_probe_emulated:
      case Program::subgroups_probe:  // built by the subgroups capability check
      case Program::denormal_probe:   // built by the denormal_decode capability check
        break;
      default:
        out.push_back({def.name, [name = std::string(def.name)] {
                         throw Unsupported("the build check has no case for program '" + name +
                                           "' (builds_to_check, src/opencl/device_api.cpp)");
                       }});
        break;
    }
  }
  // The fused kernels the automatic policy can pick here (attention_program.hpp), each as its
  // descriptor builds it for MHA and GQA 4:1.
  for (opencl::AttendKernel kernel : opencl::attend_policy_kernels(has_mma_sync)) {
    const opencl::AttendDescriptor& d = opencl::attend_descriptor(kernel);
    for (int ratio : {1, 4}) {
      opencl::ProgramArgs args;
      args.params = defaults;
      args.heads_per_group = d.heads_per_group(ratio);
      out.push_back(
          {opencl::program_def(d.program).name + gqa(ratio), program_build(d.program, args)});
      // attention.cl's second build: the V accumulators in local memory (long splits, where they
      // fit; attend_tile_slots_accumulators_local).
      args.accumulators_local = true;
      if (d.kernel == opencl::AttendKernel::tile_slots &&
          opencl::attend_tile_slots_accumulators_local(args, backend.caps()))
        out.push_back(
            {opencl::program_def(d.program).name + gqa(ratio) + ", accumulators in local memory",
             program_build(d.program, args)});
    }
  }
  return out;
}

}  // namespace

KernelBuildReport try_build_kernels(int platform_index, int device_index) {
  KernelBuildReport report;
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&] {
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  };
  std::unique_ptr<Backend> backend;
  try {
    backend = make_opencl_backend(
        DeviceSelector{std::to_string(platform_index), std::to_string(device_index)});
  } catch (const Error& e) {
    report.message = e.what();
    return finish();
  }
  auto& cl_backend = static_cast<opencl::OpenCLBackend&>(*backend);
  std::vector<CodecParams> geometries;
  for (Preset p : all_presets()) geometries.push_back(CodecParams{p, 128, kDefaultSinkhornIters});
  geometries.push_back(CodecParams{Preset::k4v2_g128, 64, kDefaultSinkhornIters});
  geometries.push_back(CodecParams{Preset::k4v2_g128, 256, kDefaultSinkhornIters});
  const opencl::CapabilityCheck& mu = cl_backend.runtime().nvidia_mma_sync();
  report.attention_variant = (mu.available ? "nvidia_mma_sync (" : "portable (") + mu.reason + ")";
  report.program_cache = cl_backend.runtime().disk_cache_state();
  try {
    report.kernel_variants = opencl::describe_kernel_variants(cl_backend);
  } catch (const KernelBuildError& e) {
    report.message = "kernel build failed for the codec program";
    report.build_log = e.build_log();
    return finish();
  } catch (const Error& e) {
    report.message = e.what();
    return finish();
  }
  int built = 0;
  for (const CheckedBuild& b : builds_to_check(cl_backend, geometries)) {
    try {
      b.build();
      ++built;
    } catch (const KernelBuildError& e) {
      report.message = "kernel build failed for " + b.what;
      report.build_log = e.build_log();
      return finish();
    } catch (const Error& e) {
      report.message = e.what();
      return finish();
    }
  }
  report.ok = true;
  report.message = "built " + std::to_string(built) + " programs (rotation, codec kernels of " +
                   std::to_string(geometries.size()) +
                   " geometries, attention, row copies and checks) on " +
                   cl_backend.caps().device_name;
  return finish();
}

}  // namespace kvarn_cl
