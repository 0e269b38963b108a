// libkvarn_cl, the C++ API in one include: presets and record layout, the CPU codec, the backends,
// the paged KV cache and decode attention. Errors are the typed exceptions of error.hpp.
#pragma once

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/decode_step.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/half.hpp"
#include "kvarn_cl/layer_plan.hpp"

namespace kvarn_cl {
// The library version, "MAJOR.MINOR.PATCH".
const char* version() noexcept;
}  // namespace kvarn_cl
