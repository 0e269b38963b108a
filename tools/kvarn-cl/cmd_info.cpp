// kvarn-cl info: what this build of the library is and what it can run on.
#include <cstdio>
#include <cstdlib>

#include "cli.hpp"
#include "kvarn_cl/device.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cli {
namespace {

const CommandSpec& spec() {
  static const CommandSpec s{
      "info",
      "Print the version, every preset with its record size and compression for D = 64, 128 and\n"
      "256, the OpenCL platforms and devices with their capabilities and whether the library's\n"
      "kernels build there, and the backend `auto` would use.",
      {{"no-build", "", "skip the kernel build check (it compiles every kernel, slow on PoCL)",
        false}},
      "The OpenCL device is chosen by KVARN_CL_PLATFORM / KVARN_CL_DEVICE or, without them, the\n"
      "first GPU, then accelerator, then CPU device.\n"};
  return s;
}

void print_presets() {
  std::printf(
      "presets (bytes of one record = one tile of one KV head; compression against fp16 K+V):\n");
  std::printf("  %-11s %2s %2s %4s  %-18s %-18s %-18s\n", "preset", "K", "V", "G", "D=64", "D=128",
              "D=256");
  for (Preset p : all_presets()) {
    const PresetInfo& info = preset_info(p);
    std::printf("  %-11s %2d %2d %4d ", info.name, info.k_bits, info.v_bits, info.group);
    for (int d : {64, 128, 256}) {
      CodecParams params;
      params.preset = p;
      params.head_dim = d;
      const RecordLayout l = RecordLayout::make(params);
      char cell[32];
      std::snprintf(cell, sizeof cell, "%zu B %.2fx", l.bytes, l.compression());
      std::printf(" %-18s", cell);
    }
    std::printf("%s\n", info.experimental ? "  (experimental)" : "");
  }
}

#if KVARN_CL_TOOL_WITH_OPENCL
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Every platform and device with the capabilities the kernels care about, and whether the
// library's kernels build there (the build log's first lines when not).
void print_opencl_devices(bool skip_build) {
  std::printf("\nOpenCL devices:\n");
  std::vector<DeviceEntry> devices;
  try {
    devices = list_opencl_devices();
  } catch (const Error& e) {
    std::printf("  discovery failed [%s]: %s\n", status_name(e.status()),
                first_line(e.what()).c_str());
    return;
  }
  if (devices.empty()) std::printf("  none (no OpenCL platform is installed)\n");
  for (const DeviceEntry& d : devices) {
    const DeviceCapabilities& c = d.caps;
    std::printf("  platform %d device %d: %s / %s (%s)\n", d.platform_index, d.device_index,
                c.platform_name.c_str(), c.device_name.c_str(), c.type.c_str());
    std::printf("    %s, %s, driver %s\n", c.device_version.c_str(), c.opencl_c_version.c_str(),
                c.driver_version.c_str());
    std::printf(
        "    %u compute units, %s local memory, work-groups up to %llu, %s global memory "
        "(%s per allocation)\n",
        c.compute_units, format_bytes(double(c.local_mem_bytes)).c_str(),
        static_cast<unsigned long long>(c.max_work_group_size),
        format_bytes(double(c.global_mem_bytes)).c_str(),
        format_bytes(double(c.max_alloc_bytes)).c_str());
    std::printf(
        "    fp16 %s, fp64 %s, subgroups %s, fp32 denormals %s, correctly rounded div/sqrt %s\n",
        c.fp16 ? "yes" : "no", c.fp64 ? "yes" : "no", c.subgroups ? "yes" : "no",
        c.denormals ? "yes" : "no", c.correctly_rounded_div_sqrt ? "yes" : "no");
    // The limit-profile test mode (docs/PORTABILITY.md): the figures above are already lowered.
    if (const char* limits = std::getenv("KVARN_CL_DEVICE_LIMITS");
        limits != nullptr && *limits != '\0')
      std::printf("    (limits lowered by KVARN_CL_DEVICE_LIMITS=%s)\n", limits);
    if (skip_build) continue;
    std::fflush(stdout);
    const KernelBuildReport r = try_build_kernels(d.platform_index, d.device_index);
    if (!r.attention_variant.empty())
      std::printf("    fused decode attention: %s\n", r.attention_variant.c_str());
    if (!r.kernel_variants.empty()) {
      std::printf("    kernel variants:\n");
      for (const std::string& v : r.kernel_variants) std::printf("      %s\n", v.c_str());
    }
    if (!r.program_cache.empty())
      std::printf("    program binary cache: %s\n", r.program_cache.c_str());
    if (r.ok) {
      std::printf("    kernels: build OK (%.1f s): %s\n", r.seconds, r.message.c_str());
    } else {
      std::printf("    kernels: build FAILED: %s\n", first_line(r.message).c_str());
      std::size_t at = 0;
      for (int line = 0; line < 20 && at < r.build_log.size(); ++line) {
        const std::size_t nl = r.build_log.find('\n', at);
        std::printf("      | %s\n", r.build_log.substr(at, nl - at).c_str());
        at = nl == std::string::npos ? r.build_log.size() : nl + 1;
      }
    }
  }
  try {
    const DeviceEntry def = default_opencl_device();
    std::printf("  default device: platform %d device %d (%s)\n", def.platform_index,
                def.device_index, def.caps.device_name.c_str());
  } catch (const Error& e) {
    std::printf("  default device: none: %s\n", first_line(e.what()).c_str());
  }
}
#endif

}  // namespace

int run_info(int argc, char** argv) {
  const Options opts(spec(), argc, argv);
  if (opts.help()) {
    std::fputs(help_text(spec()).c_str(), stdout);
    return kExitOk;
  }
  std::printf("kvarn-cl %s (libkvarn_cl), OpenCL support %s\n\n", KVARN_CL_VERSION,
              KVARN_CL_TOOL_WITH_OPENCL ? "built in" : "not built");
  print_presets();

#if KVARN_CL_TOOL_WITH_OPENCL
  print_opencl_devices(opts.has("no-build"));
#else
  std::printf("\nOpenCL: not built (configure with -DKVARN_CL_WITH_OPENCL=ON)\n");
#endif
  std::string why;
  auto backend = make_backend(BackendKind::automatic, &why);
  // The choice and its reason (src/factory/make_backend.cpp); the CPU backend's name carries its
  // thread count (KVARN_CL_THREADS) and the SIMD instruction set it dispatched to.
  std::printf("\nbackend auto uses: %s\n  why: %s\n", backend->name().c_str(), why.c_str());
  return kExitOk;
}

}  // namespace kvarn_cl::cli
