// The one table of the library's OpenCL programs: for each program, its kernel files in
// concatenation order, what its -D options are made of (record geometry from RecordLayout, heads
// per work-group, tokens per work-item, GPU-only loop unrolling, fixed variant options) and the
// kernels it holds, each with its launch descriptor's work-group size. Every work-group constant
// of a kernel exists here only, on the host: program_spec passes it to the source as a -D define
// (the kernels refuse to build without it), and the launches read the same value
// (kernel_work_group), so the two cannot disagree. The backend (opencl_backend.cpp, opencl_attend.cpp, opencl_copy_rows.cpp,
// opencl_check_rows.cpp, nvidia_mma_sync.cpp, subgroups.cpp) and the build check of `kvarn-cl info`
// (try_build_kernels, device_api.cpp) make their programs only through program_spec(), so the
// check builds the very variants the backend runs on that device.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"
#include "kvarn_cl/format.hpp"
#include "opencl/device_runtime.hpp"

namespace kvarn_cl::opencl {

enum class Program {
  rotate,                           // rotation of K/V/Q rows
  codec,                            // quantize and dequantize
  attend_tile_slots,                // fused decode attention, tile slots (attention.cl)
  attend_short,                     // fused decode attention, short contexts (attention_short.cl)
  attend_fp16,                      // plain fp16 decode attention (attention_short.cl)
  attend_nvidia_mma_sync,           // fused decode attention on matrix units (inline PTX)
  attend_nvidia_mma_sync_emulated,  // the same with the primitives emulated (any device; tests)
  mma_probe,                        // the matrix-unit capability probe (nvidia_mma_sync.hpp)
  mma_probe_emulated,
  subgroups_probe,  // the subgroups capability probe (subgroups.hpp)
  denormal_probe,   // the denormal_decode capability probe (denormal_decode.hpp)
  copy_rows,
  check_rows,
};

// The record geometry in a program's -D options (geometry_options, codec_program.hpp).
enum class Geometry {
  none,      // no geometry
  head_dim,  // only head_dim matters: the k4v2_g128 geometry at that head_dim (KV_D, KV_G = 128)
  record,    // the preset's record layout
};

// What varies between builds of one program.
struct ProgramArgs {
  CodecParams params;       // the record geometry, or (Geometry::head_dim) only its head_dim
  int heads_per_group = 0;  // attention programs
  int tokens_per_item = 0;  // codec program (quantize.cl Q_RT)
  // attention.cl: the launch asks for its V accumulators in local memory (AT_ALOCAL, where they
  // fit: attend_tile_slots_accumulators_local, attention_program.hpp); else registers.
  bool accumulators_local = false;
};

// One kernel of a program: its name and how big its work-group is. The size is computed on the
// host from the build's arguments and the device's limits (DeviceCapabilities, lowered by
// KVARN_CL_DEVICE_LIMITS where set) and reaches the source as -D<work_group_define>=<size>.
struct KernelDef {
  std::string name;
  const char* work_group_define;  // e.g. "AT_WG"
  std::size_t (*work_group)(const ProgramArgs& args, const DeviceCapabilities& caps);
};

struct ProgramDef {
  Program program;
  const char* name;                // for messages: "codec", "fused attention (tile slots)", ...
  std::vector<std::string> files;  // concatenated in this order
  Geometry geometry;
  bool heads_per_group;  // -DAT_HPW=ProgramArgs::heads_per_group
  bool tokens_per_item;  // -DQ_RT=ProgramArgs::tokens_per_item
  std::string options;   // fixed -D options of this variant
  // Added on GPU devices only: loop unrolling that keeps private arrays in registers there,
  // and that CPU compilers (PoCL) gain nothing from and compile much more slowly.
  std::string gpu_options;
  std::vector<KernelDef> kernels;
  // Further constants derived from the build's arguments (-D name=value), e.g. the tile-slot
  // kernel's units per step; nullptr where there are none.
  std::string (*derived_options)(const ProgramArgs& args, const DeviceCapabilities& caps);
};

const std::vector<ProgramDef>& program_table();
const ProgramDef& program_def(Program program);

// The work-group size of kernel `kernel` (an index into program_def(program).kernels) for a
// build with `args` on a device: what the launch uses and the source received as its define.
std::size_t kernel_work_group(Program program, std::size_t kernel, const ProgramArgs& args,
                              const DeviceCapabilities& caps);

// Whether a device gets the programs' gpu_options.
bool unrolls_loops(const DeviceCapabilities& caps);

// The files and options of one build of `program` for a device: sized by its capabilities, and
// with the variants its capability checks chose (-DKV_SUBGROUPS=1 for the programs holding
// subgroups.cl where runtime.subgroups() passed; a runtime made with caps.subgroups false, as
// KVARN_CL_DEVICE_LIMITS=subgroups=0 does, builds the portable reductions; -DAT_DENORM=1 for the
// tile-slot attention where runtime.denormal_decode() passed).
ProgramSpec program_spec(Program program, const ProgramArgs& args, DeviceRuntime& runtime);

// The kernel files of the codec programs (rotate and codec), each once, in table order.
const std::vector<std::string>& codec_files();

}  // namespace kvarn_cl::opencl
