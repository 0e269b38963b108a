// Files the extension reads for its callers (layer-preset files), read with the GIL released:
// a slow or blocked file system then stops only the calling thread, never the interpreter. (The
// library's bounded reader refuses FIFOs and devices, so a read also ends; bounded_file.hpp.)
#pragma once

#include <string>
#include <vector>

#include "kvarn_cl/format.hpp"

namespace kvarn_cl::py {

// kvarn_cl::read_layer_presets without the GIL. Called with the GIL held.
std::vector<Preset> read_layer_presets_without_gil(const std::string& path);

}  // namespace kvarn_cl::py
