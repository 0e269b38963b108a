#include "kvarn_cl/kvarn_cl.hpp"

namespace kvarn_cl {
const char* version() noexcept { return KVARN_CL_VERSION; }
}  // namespace kvarn_cl
