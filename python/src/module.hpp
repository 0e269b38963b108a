// The parts of the extension module kvarn_cl._kvarn_cl, one file each.
#pragma once

#include <nanobind/nanobind.h>

namespace kvarn_cl::py {

namespace nb = nanobind;

void register_errors(nb::module_& m);  // errors.cpp
void bind_info(nb::module_& m);        // info.cpp: version, presets, record_bytes, devices
void bind_backend(nb::module_& m);     // backend.cpp
void bind_codec(nb::module_& m);       // codec.cpp: quantize, dequantize
void bind_cache(nb::module_& m);       // cache.cpp: KVCache
void bind_layer_plan(nb::module_& m);  // layer_plan.cpp: choose_layer_presets, LayerPlan, ...

}  // namespace kvarn_cl::py
