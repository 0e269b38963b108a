// kvarn_cl._kvarn_cl: nanobind bindings of the C++ API (include/kvarn_cl). The Python package
// kvarn_cl (python/kvarn_cl/__init__.py) re-exports it; the stubs are _kvarn_cl.pyi.
#include "module.hpp"

#include "arrays.hpp"

NB_MODULE(_kvarn_cl, m) {
  using namespace kvarn_cl::py;
  m.doc() = "KVarN KV-cache quantization (libkvarn_cl) over numpy arrays";
  register_errors(m);
  bind_info(m);
  bind_backend(m);
  bind_codec(m);
  bind_cache(m);
  bind_layer_plan(m);
  m.def("_addresses", &recorded_addresses,
        "Testing hook: the data address of each array argument as the C++ code used it, keyed "
        "'function:argument' (shows that no array was copied).");
}
