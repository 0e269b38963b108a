// Fuzzes the layer-preset parser (parse_layer_presets, src/cache/layer_presets.cpp) on arbitrary
// file text. Invariants: only InvalidArgument escapes; its message is one line of printable
// ASCII whatever the file held (text from the file is escaped, so it cannot drive a terminal);
// an accepted file's presets survive format_layer_presets and a second parse unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvarn_cl;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<Preset> presets;
  try {
    presets = parse_layer_presets(text, "fuzz.txt");
  } catch (const InvalidArgument& e) {
    for (const char* p = e.what(); *p != '\0'; ++p) {
      const auto c = static_cast<unsigned char>(*p);
      if (c < 0x20 || c >= 0x7f) std::abort();
    }
    return 0;
  }
  if (presets.empty()) std::abort();
  if (parse_layer_presets(format_layer_presets(presets, "round trip"), "again") != presets) std::abort();
  return 0;
}
