// Force-included (-include) into every source of the library when it is built with hidden
// visibility (src/CMakeLists.txt): the public headers are read here first, with default
// visibility, so every class and function they declare is exported from libkvarn_cl.so and
// everything declared elsewhere (src/*, the OpenCL C++ bindings, template instantiations) is not.
// Their include guards make the later #includes of the same headers no-ops.
#pragma once
#pragma GCC visibility push(default)
#include "kvarn_cl/kvarn_cl.h"
#include "kvarn_cl/kvarn_cl.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#endif
#pragma GCC visibility pop
