// What `kvarn-cl info` says about each kernel family on a device: which variant the backend runs
// there and why, read from the launch descriptors (program_table.hpp, attention_program.hpp,
// codec_program.hpp) and the capability checks, so the listing cannot drift from what runs.
#pragma once

#include <string>
#include <vector>

#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

// One line per kernel family, "family: variant (why)". Builds the codec programs it describes
// (the quantize plan is chosen while building); throws what those builds throw.
std::vector<std::string> describe_kernel_variants(OpenCLBackend& backend);

}  // namespace kvarn_cl::opencl
