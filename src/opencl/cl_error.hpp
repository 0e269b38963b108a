// Translation of OpenCL failures into the library's typed exceptions (include/kvarn_cl/error.hpp):
// every message names the OpenCL call and the error code by name.
#pragma once

#include <string>

#include "opencl/cl_headers.hpp"

namespace kvarn_cl::opencl {

// "CL_OUT_OF_RESOURCES" for -5; "CL_UNKNOWN_ERROR" for codes it does not know.
const char* cl_error_name(cl_int code) noexcept;

// What an error means for the caller: while allocating, running out of device memory or
// resources is OutOfMemory; elsewhere only CL_MEM_OBJECT_ALLOCATION_FAILURE is (drivers such as
// NVIDIA's allocate lazily and report it at the first use of a buffer).
enum class ClContext { general, allocation };

// Throws DeviceError / OutOfMemory for `code`. `what` says what the library was doing.
[[noreturn]] void throw_cl_error(const std::string& what, const char* call, cl_int code,
                                 ClContext context = ClContext::general);

// Runs f(); a cl::Error escaping it becomes the typed exception (cl::BuildError is expected to be
// handled where programs are built).
template <typename F>
decltype(auto) cl_call(const std::string& what, F&& f, ClContext context = ClContext::general) {
  try {
    return f();
  } catch (const cl::Error& e) {
    throw_cl_error(what, e.what(), e.err(), context);
  }
}

}  // namespace kvarn_cl::opencl
