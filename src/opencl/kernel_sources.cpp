// Embedded kernel files, or the files of KVARN_CL_KERNEL_DIR when that variable is set.
#include "opencl/kernel_sources.hpp"

#include <cstdlib>

#include "io/bounded_file.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::opencl {
namespace {

const char* kernel_dir() {
  const char* dir = std::getenv("KVARN_CL_KERNEL_DIR");
  return (dir != nullptr && *dir != '\0') ? dir : nullptr;
}

}  // namespace

std::string kernel_source(const std::string& file) {
  if (const char* dir = kernel_dir()) {
    const std::string path = std::string(dir) + "/" + file;
    return io::read_text_file(path, {io::kMaxTextFileBytes, false, true},
                              "kernel file '" + path + "' (KVARN_CL_KERNEL_DIR=" + dir + ")");
  }
  for (std::size_t i = 0; i < kEmbeddedKernelFileCount; ++i)
    if (file == kEmbeddedKernelFiles[i].name)
      return std::string(kEmbeddedKernelFiles[i].source, kEmbeddedKernelFiles[i].size);
  std::string known;
  for (std::size_t i = 0; i < kEmbeddedKernelFileCount; ++i)
    known += std::string(i ? ", " : "") + kEmbeddedKernelFiles[i].name;
  throw InvalidArgument("kernel file '" + file + "' is not embedded in the library (embedded: " +
                        known + "); add it to kernels/CMakeLists.txt");
}

std::string program_source(const std::vector<std::string>& files) {
  std::string out;
  for (const std::string& f : files) {
    out += "#line 1 \"" + f + "\"\n";
    out += kernel_source(f);
    out += "\n";
  }
  return out;
}

std::string kernel_source_origin() {
  const char* dir = kernel_dir();
  return dir ? std::string(dir) : std::string("embedded");
}

}  // namespace kvarn_cl::opencl
