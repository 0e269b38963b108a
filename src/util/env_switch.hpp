// The one reading of the library's on/off environment variables (KVARN_CL_CACHE, KVARN_CL_MMA,
// KVARN_CL_DENORMAL_DECODE): "0" or "off" turns a thing off, "1" or "on" asks for it, unset
// leaves it to the library's policy. Anything else is `other`: the caller leaves it to the policy
// too and, where it reports a verdict, names the value.
#pragma once

namespace kvarn_cl::util {

enum class Switch { unset, off, on, other };

// `value` as std::getenv returns it (nullptr when unset).
Switch read_switch(const char* value) noexcept;

}  // namespace kvarn_cl::util
