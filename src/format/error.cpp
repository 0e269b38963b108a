#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

const char* status_name(Status s) noexcept {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::invalid_argument:
      return "invalid_argument";
    case Status::non_finite_input:
      return "non_finite_input";
    case Status::corrupt_record:
      return "corrupt_record";
    case Status::out_of_memory:
      return "out_of_memory";
    case Status::device_error:
      return "device_error";
    case Status::kernel_build_error:
      return "kernel_build_error";
    case Status::unsupported:
      return "unsupported";
    case Status::io_error:
      return "io_error";
    case Status::internal:
      return "internal";
  }
  return "unknown";
}

}  // namespace kvarn_cl
