// The C edge: the thread-local last-error message and the guard that turns every exception into a
// status code (exceptions never cross into C).
#pragma once

#include <string>

#include "kvarn_cl/kvarn_cl.h"

namespace kvarn_cl::capi {

void set_last_error(const std::string& message) noexcept;
const char* last_error() noexcept;

// Runs body(); returns KVARN_CL_OK, or the status of the exception it threw (message kept).
template <typename Body>
kvarn_cl_status guarded(Body&& body) noexcept;

kvarn_cl_status fail(kvarn_cl_status status, const std::string& message) noexcept;

}  // namespace kvarn_cl::capi

#include "capi/guarded.inl"
