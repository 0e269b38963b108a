// Reading files for Python callers without the GIL (files.hpp).
#include "files.hpp"

#include <nanobind/nanobind.h>

#include "kvarn_cl/cache.hpp"

namespace kvarn_cl::py {

namespace nb = nanobind;

std::vector<Preset> read_layer_presets_without_gil(const std::string& path) {
  // The exception of a refused file crosses the release: it re-acquires the GIL as it unwinds.
  nb::gil_scoped_release no_gil;
  return read_layer_presets(path);
}

}  // namespace kvarn_cl::py
