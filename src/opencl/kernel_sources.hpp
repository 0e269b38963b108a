// Kernel source files: embedded into the library at build time from kernels/ (the list in
// kernels/CMakeLists.txt), or read from the directory named by KVARN_CL_KERNEL_DIR (for kernel
// development without relinking, and to test build-failure reporting).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace kvarn_cl::opencl {

struct EmbeddedKernelFile {
  const char* name;    // "quantize.cl"
  const char* source;  // NUL-terminated
  std::size_t size;    // bytes without the NUL
};
// Defined in the generated kvarn_cl_embedded_kernels.cpp.
extern const EmbeddedKernelFile kEmbeddedKernelFiles[];
extern const std::size_t kEmbeddedKernelFileCount;

// The text of one kernel file. Throws IoError when KVARN_CL_KERNEL_DIR is set and the file cannot
// be read there, InvalidArgument when no embedded file has that name.
std::string kernel_source(const std::string& file);

// The files concatenated in order, each preceded by a #line directive naming it, so build logs
// point at the right file and line.
std::string program_source(const std::vector<std::string>& files);

// Where sources come from right now: "embedded" or the KVARN_CL_KERNEL_DIR path.
std::string kernel_source_origin();

}  // namespace kvarn_cl::opencl
