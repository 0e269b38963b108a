#include "capi/last_error.hpp"

namespace kvarn_cl::capi {
namespace {
thread_local std::string tls_last_error;
}

void set_last_error(const std::string& message) noexcept {
  try {
    tls_last_error = message;
  } catch (...) {
    tls_last_error.clear();  // no memory for the message: an empty one is still safe
  }
}

const char* last_error() noexcept { return tls_last_error.c_str(); }

kvarn_cl_status fail(kvarn_cl_status status, const std::string& message) noexcept {
  set_last_error(message);
  return status;
}

}  // namespace kvarn_cl::capi
