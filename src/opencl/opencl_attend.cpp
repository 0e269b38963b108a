// Fused decode attention on the OpenCL device. Not written yet: the attention work replaces this
// file (with its kernels in kernels/attention*.cl, registered in kernels/CMakeLists.txt).
#include "kvarn_cl/error.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::opencl {

void OpenCLBackend::attend(const AttendArgs& /*args*/) {
  throw Unsupported("attend on the OpenCL backend (" + name() + ") is not yet implemented");
}

}  // namespace kvarn_cl::opencl
