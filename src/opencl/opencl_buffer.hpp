// A Buffer of the OpenCL backend: one cl_mem (created by the backend or wrapped from a caller).
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "backend_api/checks.hpp"  // check_range and the other argument checks, for every method
#include "kvarn_cl/backend.hpp"
#include "opencl/cl_headers.hpp"

namespace kvarn_cl::opencl {

class ClBuffer final : public Buffer {
 public:
  ClBuffer(cl::Buffer mem, std::size_t bytes) : mem_(std::move(mem)), bytes_(bytes) {}
  std::size_t size() const noexcept override { return bytes_; }
  const cl::Buffer& mem() const noexcept { return mem_; }

 private:
  cl::Buffer mem_;
  std::size_t bytes_;
};

// The cl::Buffer behind `buffer`; throws InvalidArgument naming `argument` when it is not a
// buffer of an OpenCL backend (e.g. a CPU backend's buffer).
const cl::Buffer& cl_buffer(const Buffer& buffer, const char* argument);

}  // namespace kvarn_cl::opencl
