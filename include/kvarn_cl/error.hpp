// Typed exceptions of the C++ API. Every message names the offending argument and its value.
// The C API (kvarn_cl.h) maps each type to a status code; nothing in the library calls exit().
#pragma once

#include <stdexcept>
#include <string>

namespace kvarn_cl {

// Status codes shared by the C API (kvarn_cl_status) and Error::status().
enum class Status : int {
  ok = 0,
  invalid_argument = 1,    // wrong preset, head_dim, shapes, sizes, indices
  non_finite_input = 2,    // NaN or Inf in keys/values/queries
  corrupt_record = 3,      // truncated record data or non-finite/negative scales
  out_of_memory = 4,       // host or device allocation failed
  device_error = 5,        // an OpenCL call failed
  kernel_build_error = 6,  // an OpenCL program failed to build (log attached)
  unsupported = 7,         // feature not available on this build/device
  io_error = 8,            // file could not be read or written
  internal = 9,
};

const char* status_name(Status s) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

#define KVARN_CL_DEFINE_ERROR(Name, code)                                       \
  class Name : public Error {                                                   \
   public:                                                                      \
    explicit Name(const std::string& message) : Error(Status::code, message) {} \
  };

KVARN_CL_DEFINE_ERROR(InvalidArgument, invalid_argument)
KVARN_CL_DEFINE_ERROR(NonFiniteInput, non_finite_input)
KVARN_CL_DEFINE_ERROR(CorruptRecord, corrupt_record)
KVARN_CL_DEFINE_ERROR(OutOfMemory, out_of_memory)
KVARN_CL_DEFINE_ERROR(DeviceError, device_error)
KVARN_CL_DEFINE_ERROR(Unsupported, unsupported)
KVARN_CL_DEFINE_ERROR(IoError, io_error)
#undef KVARN_CL_DEFINE_ERROR

// A kernel build failure keeps the compiler's log so callers (and `kvarn-cl info`) can show it.
class KernelBuildError : public Error {
 public:
  KernelBuildError(const std::string& message, std::string build_log)
      : Error(Status::kernel_build_error, message + "\n--- build log ---\n" + build_log),
        log_(std::move(build_log)) {}
  const std::string& build_log() const noexcept { return log_; }

 private:
  std::string log_;
};

}  // namespace kvarn_cl
